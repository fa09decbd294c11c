"""Exports that are not JSON lines, read through DuckDB as one JSON text per row: a JSON array
(BigQuery's export, pretty-printed or on one line) and Parquet (GA4 to a bucket, Segment
warehouse dumps). Both are read from a local file; readers.py spools other streams first.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from replayer.records import BOM

_FETCH_ROWS = 10_000
_ARRAY = "SELECT json::VARCHAR FROM read_json_objects(?, format='array')"
_PARQUET = "SELECT to_json(t)::VARCHAR FROM read_parquet(?) t"
_PARQUET_COLUMNS = "SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet(?))"


class Readable(Protocol):
    """A binary stream: a file, a zip member, a gzip stream, an object."""

    def read(self, size: int = ..., /) -> bytes:
        """Up to `size` bytes; b"" at the end."""
        ...


class DocumentError(ValueError):
    """A file that is not the array or the Parquet file it claims to be: one line."""


def starts_an_array(head: bytes) -> bool:
    """Whether a stream whose first bytes are `head` holds a JSON array, not JSON lines."""
    return head.lstrip(BOM + b" \t\r\n")[:1] == b"["


def array_rows(path: str) -> Iterator[bytes]:
    """Each element of the JSON array in `path`, as its JSON text."""
    with _engine(path, "not a JSON array") as db:
        result = db.execute(_ARRAY, [path])
        while batch := result.fetchmany(_FETCH_ROWS):
            for (text,) in batch:
                yield text.encode()


def parquet_rows(path: str, *, needed: tuple[frozenset[str], ...]) -> Iterator[bytes]:
    """Each row of the Parquet file `path` as a JSON object; a DocumentError when some set
    of `needed` columns has none in the file (the export is not the vendor's)."""
    with _engine(path, "not a Parquet file") as db:
        columns = {name for (name,) in db.execute(_PARQUET_COLUMNS, [path]).fetchall()}
        for names in needed:
            if not names & columns:
                raise DocumentError(
                    f"no column {' or '.join(sorted(names))}: the columns are not this "
                    f"export's ({', '.join(sorted(columns)[:8])}{', ...' if len(columns) > 8 else ''})")
        result = db.execute(_PARQUET, [path])
        while batch := result.fetchmany(_FETCH_ROWS):
            for (text,) in batch:
                yield text.encode()


def spooled(stream: Readable, head: bytes, folder: str) -> str:
    """`head` and the rest of `stream` copied to a file in `folder` (for DuckDB to read)."""
    with tempfile.NamedTemporaryFile("wb", dir=folder, delete=False) as copy:
        copy.write(head)
        shutil.copyfileobj(stream, copy, 1 << 20)
        return copy.name


@contextmanager
def _engine(path: str, what: str) -> Iterator[Any]:
    import duckdb
    db = duckdb.connect()
    try:
        yield db
    except duckdb.Error as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DocumentError(f"{what}: {message.replace(path, 'it')}") from None
    finally:
        db.close()
