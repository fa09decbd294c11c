"""Small pieces of the report page's HTML: escaping, tables, and summary.json lookups. Pure."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any


def esc(value: Any) -> str:
    """Any value as escaped HTML text."""
    return html.escape(str(value), quote=True)


def table(head: tuple[str, ...], rows: Iterable[tuple[Any, ...]], *,
          numeric: tuple[int, ...] = (), message: int | None = None,
          verdict: int | None = None, table_id: str | None = None) -> str:
    """An HTML table; `numeric`, `message` and `verdict` name columns styled as such."""
    def cell(i: int, value: Any) -> str:
        cls = (' class="n"' if i in numeric else ' class="msg"' if i == message
               else f' class="{"fail" if value == "FAIL" else "pass"}"' if i == verdict
               else "")
        return f"<td{cls}>{esc(value)}</td>"

    ident = f' id="{esc(table_id)}"' if table_id else ""
    header = ("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>"
              if any(head) else "")
    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table{ident}>{header}<tbody>{body}</tbody></table>"


def thresholds(s: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """summary.json's threshold verdicts (--fail-if), each a mapping; [] without any."""
    verdicts = s.get("thresholds")
    return [t for t in verdicts if isinstance(t, Mapping)] if isinstance(verdicts, list) else []


def failed_thresholds(s: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The threshold verdicts that failed."""
    return [t for t in thresholds(s) if t.get("failed") is True]


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` when it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def num(value: Any) -> int:
    """`value` when it is an int, else 0."""
    return value if isinstance(value, int) else 0
