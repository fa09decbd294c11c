"""Logging to stderr as text or JSON lines; a line about a record names its file, line and user.

stdout stays clean for pipes. Nothing logged carries the client key: records holding
one (at any depth) never become sessions, messages about them are built from redacted
values, and a server's messages are masked by `classify` before anyone logs them.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

log = logging.getLogger("replayer")

_RECORD_FIELDS = ("file", "line", "user", "kind")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, msg, and the record's fields when about a record."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        for name in _RECORD_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        return orjson.dumps(doc).decode()


class TextFormatter(logging.Formatter):
    """`replayer: <file>:<line> [<user>] <message>` for record lines, else `replayer: <message>`."""

    def format(self, record: logging.LogRecord) -> str:
        where = ""
        file = getattr(record, "file", None)
        if file is not None:
            user = getattr(record, "user", None)
            where = f"{file}:{getattr(record, 'line', '?')}" + (f" [{user}]" if user else "") + " "
        return f"replayer: {where}{record.getMessage()}"


class ConsoleHandler(logging.Handler):
    """Prints through a rich console, so lines appear above a live progress display."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        self._console.print(self.format(record), markup=False, highlight=False,
                            soft_wrap=True)


def setup_logging(*, fmt: str, level: str, quiet: bool = False, console: Any = None) -> None:
    """Sends the `replayer` logger to stderr in `fmt` at `level` (errors only when quiet).

    With a rich `console` (a live display on the terminal), lines go through it.
    """
    handler: logging.Handler = (
        ConsoleHandler(console) if console is not None else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.ERROR if quiet else _LEVELS.get(level, logging.INFO))


def about(file: str, line: int, user: str | None, kind: str | None = None) -> dict[str, Any]:
    """The `extra` of a log line about one record."""
    return {"file": file, "line": line, "user": user, "kind": kind}
