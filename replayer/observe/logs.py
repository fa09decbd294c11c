"""Logging to stderr as text or JSON lines; a line about a record names its file, line and user.

stdout stays clean for pipes. Nothing logged carries the client key: records holding
one (at any depth) never become sessions, messages about them are built from redacted
values, and a server's messages are masked by `classify` before anyone logs them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import orjson

from replayer.observe.loglimit import Held, LineBudget, more_text

log = logging.getLogger("replayer")

_RECORD_FIELDS = ("file", "line", "user", "kind")
_EXTRA_FIELDS = (*_RECORD_FIELDS, "progress")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def json_line(*, ts: float, level: str, msg: str, fields: dict[str, Any]) -> str:
    """One JSON log line: ts, level, msg, then `fields` that are set."""
    doc: dict[str, Any] = {
        "ts": datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds"),
        "level": level, "msg": msg.strip(),
    }
    doc.update((name, value) for name, value in fields.items() if value is not None)
    return orjson.dumps(doc).decode()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, msg, and the record's fields when about a record."""

    def format(self, record: logging.LogRecord) -> str:
        return json_line(ts=record.created, level=record.levelname.lower(),
                         msg=record.getMessage(),
                         fields={name: getattr(record, name, None) for name in _EXTRA_FIELDS})


class TextFormatter(logging.Formatter):
    """`replayer: <file>:<line> [<user>] <message>` for record lines, else `replayer: <message>`;
    a line said to the operator (`say`) as it is."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "plain", False):
            return record.getMessage()
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


class FailureLines(logging.Handler):
    """Hands lines on to `inner`, lines about failed records within a `LineBudget`; the
    count of those held back follows once their interval is over (or at `flush(every)`)."""

    def __init__(self, inner: logging.Handler, budget: LineBudget,
                 now: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.inner = inner
        self._budget = budget
        self._now = now

    def emit(self, record: logging.LogRecord) -> None:
        kind = getattr(record, "kind", None)
        if kind is None or record.levelno <= logging.DEBUG:
            self.inner.handle(record)
            return
        shown, over = self._budget.take(str(kind), self._now())
        self._tell(over)
        if shown:
            self.inner.handle(record)

    def flush_held(self, *, every: bool = False) -> None:
        """Tells the counts of lines held back in intervals now over (in all, when `every`)."""
        self._tell(self._budget.due(self._now(), every=every))

    def _tell(self, held: list[Held]) -> None:
        for h in held:
            self.inner.handle(log.makeRecord(log.name, logging.INFO, "(replayer)", 0,
                                             more_text(h), (), None, extra={"kind": h.kind}))


def setup_logging(*, fmt: str, level: str, quiet: bool = False, console: Any = None,
                  limit: bool = True) -> None:
    """Sends the `replayer` logger to stderr in `fmt` at `level` (errors only when quiet).

    With a rich `console` (a live display on the terminal), lines go through it. Lines
    about failed records are limited per kind (`loglimit`) unless `limit` is off or the
    level is debug (every record).
    """
    handler: logging.Handler = (
        ConsoleHandler(console) if console is not None else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if limit and level != "debug":
        handler = FailureLines(handler, LineBudget())
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.ERROR if quiet else _LEVELS.get(level, logging.INFO))


def say(text: str) -> None:
    """A line for the operator on the log stream, whatever the level: as it is in text, a
    JSON line in JSON; above the live display when there is one."""
    if not log.handlers:  # logging not set up (yet): plain on stderr all the same
        print(text, file=sys.stderr, flush=True)
        return
    record = log.makeRecord(log.name, logging.WARNING, "(replayer)", 0, text, (), None,
                            extra={"plain": True})
    for handler in log.handlers:
        handler.handle(record)


def flush_held(*, every: bool = False) -> None:
    """Tells the counts of failure lines held back (see `FailureLines.flush_held`)."""
    for handler in log.handlers:
        if isinstance(handler, FailureLines):
            handler.flush_held(every=every)


def relay(raw: bytes) -> None:
    """A line a worker wrote on its stderr (a JSON log line, or anything else), logged again
    here: in the run's format, within the run's limits, above the live display."""
    text = raw.decode(errors="replace").rstrip("\r\n")
    if not text:
        return
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("msg"), str):
        say(text)  # a traceback, say: shown as it came
        return
    level = _LEVELS.get(str(doc.get("level")), logging.INFO)
    extra = {name: doc[name] for name in _EXTRA_FIELDS if name in doc}
    record = log.makeRecord(log.name, level, "(worker)", 0, doc["msg"], (), None, extra=extra)
    with suppress(ValueError, TypeError):
        record.created = datetime.fromisoformat(str(doc.get("ts"))).timestamp()
    log.handle(record)


def about(file: str, line: int, user: str | None, kind: str | None = None) -> dict[str, Any]:
    """The `extra` of a log line about one record."""
    return {"file": file, "line": line, "user": user, "kind": kind}
