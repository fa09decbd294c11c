"""The events of one conversion as a table in DuckDB: duplicates dropped and sessions cut
by out-of-core queries, so neither the order of the input nor its size matters.

Accepted events are spooled (spool.py: narrow JSON lines, the lines' bytes beside them) in a
private temporary folder, loaded into a DuckDB database file there (where DuckDB also
spills), cut into sessions and read back one row per session, by session start; memory is
DuckDB's `memory_limit`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from replayer.source.convert.spool import Spool, spool_rows

ENGINE_HINT = "convert needs DuckDB, a dependency of replayer: pip install 'duckdb>=1.1'"
DEFAULT_MEMORY_LIMIT = "512MB"
MEMORY_LIMIT = re.compile(r"\d+(\.\d+)?\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)", re.IGNORECASE)
_FETCH_ROWS = 10_000
_COLUMNS = ("{usr: 'VARCHAR', k: 'VARCHAR', t: 'DOUBLE', mark: 'BOOLEAN', dup: 'VARCHAR', "
            "f: 'INTEGER', n: 'BIGINT', uid: 'VARCHAR', did: 'VARCHAR', attrs: 'VARCHAR', "
            "ks: 'DOUBLE', h: 'VARCHAR', w: 'INTEGER', o: 'BIGINT', len: 'INTEGER'}")
# Ties on time are broken by the MD5 of the line's bytes, never by its place: the same
# events in any order give the same sessions, the same first events and the same copy of a
# duplicate. Only copies of the very same line tie on both; they differ in nothing written
# but where they were read, which (file, line) then decides.
_ORDER = "t, h, f, n"
_KEEP = f"""
CREATE TABLE kept AS
SELECT * FROM read_json(?, format='newline_delimited', columns={_COLUMNS})
QUALIFY dup IS NULL OR row_number() OVER (PARTITION BY usr, dup ORDER BY {_ORDER}) = 1
"""
_KEPT_PER_FILE = "SELECT f, count(*) FROM kept GROUP BY f"
# A change of user ID (a login, a logout, an identity merge) opens a session too: no event
# is put under a user who did not do it, and a session's events share one user ID. A
# session starts at its first event, or at the earlier start its key names (ks) when it is
# its key's first session and that start is less than the gap earlier (no session spans a
# pause of the gap: a key further back names no start this export can vouch for). Window
# functions and one sort, all of which spill: each session comes back as its first event's
# row (its place, its count, its first device ID, its attributes), followed by the rows of
# its later events that carry attributes, in time order.
_SESSIONS = f"""
WITH flagged AS (
    SELECT *, CASE WHEN lag(t) OVER w IS NULL OR t - lag(t) OVER w >= $gap
                     OR ($markers AND mark AND k IS NULL)
                     OR uid IS DISTINCT FROM lag(uid) OVER w THEN 1 ELSE 0 END AS opens,
           lag(t) OVER w IS NULL AS key_first
    FROM kept WINDOW w AS (PARTITION BY usr, k ORDER BY {_ORDER})
),
numbered AS (
    SELECT *, sum(opens) OVER (PARTITION BY usr, k ORDER BY {_ORDER}
                               ROWS UNBOUNDED PRECEDING) AS s
    FROM flagged
),
timed AS (
    SELECT *, min(t) OVER p AS first_t, bool_or(key_first) OVER p AS keyed,
           count(*) OVER p AS events,
           first_value(did IGNORE NULLS) OVER (PARTITION BY usr, k, s ORDER BY {_ORDER}
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS first_did
    FROM numbered WINDOW p AS (PARTITION BY usr, k, s)
)
SELECT opens, CASE WHEN keyed AND ks < first_t AND first_t - ks < $gap THEN ks ELSE first_t END
       AS start, w, o, len, f, n, uid, events, first_did, attrs
FROM timed
WHERE opens = 1 OR attrs IS NOT NULL
ORDER BY start, usr, k NULLS FIRST, s, {_ORDER}
"""


class EngineMissing(Exception):
    """DuckDB is not installed: the conversion cannot start (its message says what to do)."""

    def __init__(self) -> None:
        super().__init__(ENGINE_HINT)


class EngineFailure(Exception):
    """The engine could not finish (memory too small, temporary files not writable): one line."""


def engine_available() -> bool:
    """Whether DuckDB can be imported (checked before any output is opened)."""
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session as the table gives it back: its start, where its first event's line
    was spooled and read, how many events it holds, its user ID, its first device ID and
    its events' attributes (JSON objects, in time order)."""

    start_s: float
    pid: int
    offset: int
    length: int
    file_no: int
    line_no: int
    events: int
    user_id: str | None
    device_id: str | None
    attributes: list[str]


# A session: (start, its first event's place as a dict, events, device ID, attributes).
RawSession = tuple[Any, ...]


def session_row(raw: RawSession) -> SessionRow:
    """A session of `EventTable.sessions` as a `SessionRow`."""
    start_s, first, events, device_id, attributes = raw
    return SessionRow(start_s, first["w"], first["o"], first["len"], first["f"], first["n"],
                      events, first["uid"], device_id, attributes)


class EventTable:
    """Collects events (its `spool`, and other processes' spools in its `folder`), then gives
    them back as sessions (`sessions`); a context manager that removes its temporary folder."""

    def __init__(self, *, memory_limit: str, temp_dir: str | None = None) -> None:
        try:
            import duckdb
        except ImportError:
            raise EngineMissing() from None
        self.folder = tempfile.mkdtemp(prefix="replayer-convert-", dir=temp_dir)
        self.spool = Spool(self.folder)
        # A database file, not memory: the loaded table lives on disk past the memory limit.
        self._db = duckdb.connect(os.path.join(self.folder, "events.duckdb"), config={
            "memory_limit": memory_limit, "temp_directory": os.path.join(self.folder, "spill"),
            "preserve_insertion_order": False})
        self._db.execute("SET enable_progress_bar = false")
        self._loaded = False
        self._memory_limit = memory_limit

    def __enter__(self) -> Self:
        return self

    def __exit__(self, _type: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Frees the connection and deletes every temporary file."""
        self.spool.close()
        self._db.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _load(self) -> None:
        """Ends the spools and loads them into the table, duplicates dropped, once."""
        self.spool.close()
        spooled = [path for path in spool_rows(self.folder) if os.path.getsize(path)]
        if self._loaded or not spooled:
            return
        with self._engine_errors():
            self._db.execute(_KEEP, [spooled])
        for path in spool_rows(self.folder):
            os.remove(path)
        self._loaded = True

    def kept(self) -> dict[int, int]:
        """Events kept per file number: those of no user and duplicate key of an earlier (by
        time, then bytes) event."""
        self._load()
        if not self._loaded:
            return {}
        with self._engine_errors():
            found = self._db.execute(_KEPT_PER_FILE).fetchall()
        return {int(f): int(n) for f, n in found}

    @contextmanager
    def _engine_errors(self) -> Iterator[None]:
        """DuckDB's failures that end the conversion, as one line (EngineFailure)."""
        import duckdb
        try:
            yield
        except duckdb.OutOfMemoryException:
            raise EngineFailure(f"--memory-limit {self._memory_limit} is too small to sort "
                                "these events: give more") from None
        except duckdb.IOException as exc:
            raise EngineFailure(f"cannot spill to {self.folder}: {_first_line(exc)}") from None

    def sessions(self, *, gap_s: float, markers: bool,
                 batch_rows: int = _FETCH_ROWS) -> Iterator[list[RawSession]]:
        """Every session of the kept events, in batches of `batch_rows`, by start time, as
        the engine gives them (plain tuples, cheap to hand to a worker: `session_row`); a
        pause of `gap_s` or more, a marker (with `markers`, for events without a session key)
        or a change of user ID opens a session."""
        self._load()
        if not self._loaded:
            return
        with self._engine_errors():
            result = self._db.execute(_SESSIONS, {"gap": gap_s, "markers": markers})
            rows = result.fetchmany(_FETCH_ROWS)
        batch: list[RawSession] = []
        attributes: list[str] = []
        while rows:
            for opens, start_s, pid, offset, length, f, n, uid, events, did, attrs in rows:
                if opens:
                    if len(batch) >= batch_rows:
                        yield batch
                        batch = []
                    attributes = []
                    batch.append((start_s, {"w": pid, "o": offset, "len": length, "f": f,
                                            "n": n, "uid": uid}, events, did, attributes))
                if attrs is not None:
                    attributes.append(attrs)
            with self._engine_errors():
                rows = result.fetchmany(_FETCH_ROWS)
        if batch:
            yield batch


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
