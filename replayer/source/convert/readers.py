"""Reads vendor exports as numbered lines: .json/.jsonl/.ndjson, .gz, .zip, .parquet, dirs
and globs, local or in an object store (s3://, gs://, az://, https://; see source/objects.py).

A file (or zip member) that starts with `[` is a JSON array and a .parquet file a table
(documents.py): each element or row is a line, numbered from 1. Everything is read in name
order (directories recursively, zip members by name). A file that cannot be read ends the
conversion with an `InputError` (exit code 4).
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import stat
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from replayer.records import line_body
from replayer.source import objects
from replayer.source.convert.documents import (
    DocumentError,
    Readable,
    array_rows,
    parquet_rows,
    spooled,
    starts_an_array,
)
from replayer.source.objects import is_url
from replayer.source.read import InputUnreadable, display_name, open_source
from replayer.source.redact import redact_urls

STDIN = "-"
EXPORT_SUFFIXES = (".json", ".jsonl", ".ndjson", ".gz", ".zip", ".parquet")
PARQUET = ".parquet"
_HEAD_BYTES = 1 << 16  # read before deciding whether a stream is JSON lines or an array
_MEMBER_SUFFIXES = tuple(s for s in EXPORT_SUFFIXES if s != ".zip")
_GLOB_CHARS = frozenset("*?[")
# What a path is when it is neither a folder, a regular file nor a FIFO (stat's S_IS*).
_NOT_READABLE_KINDS = (
    (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class InputError(Exception):
    """An input that cannot be found or read: the run stops with one clear line."""


@dataclass(frozen=True, slots=True)
class ExportLine:
    """One non-blank line: the file (or `archive.zip:member`) it came from and its number."""

    file: str
    line_no: int
    data: bytes


def expand_paths(paths: tuple[str, ...] | list[str]) -> list[str]:
    """PATH arguments -> files in order: a glob's matches and a directory's export files
    sorted by name; raises InputError for a path that matches nothing."""
    files: list[str] = []
    for path in paths:
        if path == STDIN:
            files.append(path)
        elif is_url(path):
            files.extend(_objects(path))
        elif _GLOB_CHARS & set(path):
            matches = sorted(glob.glob(path, recursive=True))
            found = [m for m in matches if os.path.isfile(m)]
            if not found:
                raise InputError(f"{path}: no file matches")
            files.extend(found)
        elif os.path.isdir(path):
            found = sorted(_export_files(path))
            if not found:
                raise InputError(f"{path} is a folder with no export files "
                                 f"({', '.join(EXPORT_SUFFIXES)})")
            files.extend(found)
        else:
            files.append(_local_file(path))
    return files


def _local_file(path: str) -> str:
    """`path` when it is a regular file or a FIFO (`<(zcat a.gz)`, as `run` reads them);
    else an InputError that says what it is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or directory") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {_why(exc)}") from None
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return path
    kind = next((name for test, name in _NOT_READABLE_KINDS if test(mode)), "a special file")
    raise InputError(f"{path} is {kind}: give files, FIFOs or folders of exports")


def _objects(url: str) -> list[str]:
    """A URL's objects in name order (a glob's, or a folder's export objects)."""
    try:
        return [o.url for o in objects.expand(url, suffixes=EXPORT_SUFFIXES)]
    except objects.ObjectsUnavailable:
        raise  # no client library, or no credentials: the command says it (exit 2)
    except objects.ObjectError as exc:
        raise InputError(str(exc)) from None


def _export_files(root: str) -> Iterator[str]:
    for folder, _dirs, names in os.walk(root):
        for name in names:
            if name.endswith(EXPORT_SUFFIXES):
                yield os.path.join(folder, name)


def iter_export_lines(files: list[str], *, columns: tuple[frozenset[str], ...] = (),
                      temp_dir: str | None = None) -> Iterator[ExportLine]:
    """Every non-blank line of every file in order (numbered from 1 per file or member),
    named as display_name names it (an https URL without its query). A Parquet file must
    have one of each set of `columns` (the mapping's time and user), else InputError.
    Arrays and Parquet that are no local file are copied to a folder in `temp_dir`."""
    with tempfile.TemporaryDirectory(prefix="replayer-inputs-", dir=temp_dir) as folder:
        reader = _Reader(columns, folder)
        for path in files:
            try:
                if display_name(path).endswith(".zip"):
                    yield from reader.zip_lines(path)
                elif path == STDIN:
                    yield from reader.lines("<stdin>", sys.stdin.buffer)
                elif display_name(path).endswith(PARQUET):
                    yield from reader.parquet_file(path)
                else:
                    with open_source(path) as stream:
                        yield from reader.lines(display_name(path), stream)
            except InputUnreadable as exc:
                raise InputError(str(exc)) from None
            except DocumentError as exc:
                raise InputError(f"{display_name(path)}: {exc}") from None
            except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
                raise InputError(f"{display_name(path)}: cannot read: {_why(exc)}") from exc


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return redact_urls(str(exc)) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class _Reader:
    """Reads one file or stream as lines; arrays and Parquet that are no local file are
    first copied to `folder` for DuckDB."""

    columns: tuple[frozenset[str], ...]
    folder: str

    def zip_lines(self, path: str) -> Iterator[ExportLine]:
        """The export members of a zip (name order; what they are decides how they are read)."""
        try:
            source = objects.seekable_object(path) if is_url(path) else path
        except (objects.ObjectError, objects.ObjectsUnavailable) as exc:
            raise InputUnreadable(str(exc)) from None
        with zipfile.ZipFile(source) as archive:
            members = sorted(info.filename for info in archive.infolist()
                             if not info.is_dir() and info.filename.endswith(_MEMBER_SUFFIXES))
            if not members:
                raise InputError(f"{display_name(path)}: a zip with no export member "
                                 f"({', '.join(_MEMBER_SUFFIXES)})")
            for member in members:
                with archive.open(member) as raw:
                    name = f"{display_name(path)}:{member}"
                    if member.endswith(PARQUET):
                        yield from self.parquet_lines(name, spooled(raw, b"", self.folder))
                    elif member.endswith(".gz"):
                        with gzip.open(raw, "rb") as stream:
                            yield from self.lines(name, stream)
                    else:
                        yield from self.lines(name, raw)

    def parquet_file(self, path: str) -> Iterator[ExportLine]:
        """A Parquet input (an object is first copied to the folder)."""
        if not is_url(path):
            yield from self.parquet_lines(display_name(path), path)
            return
        with open_source(path) as stream:
            copy = spooled(stream, b"", self.folder)
        try:
            yield from self.parquet_lines(display_name(path), copy)
        finally:
            os.remove(copy)

    def parquet_lines(self, name: str, path: str) -> Iterator[ExportLine]:
        """Each row of a local Parquet file as a JSON object."""
        for row_no, data in enumerate(parquet_rows(path, needed=self.columns), start=1):
            yield ExportLine(name, row_no, data)

    def lines(self, name: str, stream: Readable) -> Iterator[ExportLine]:
        """JSON lines, or the elements of a JSON array (decided by the first bytes)."""
        head = stream.read(_HEAD_BYTES)
        if starts_an_array(head):
            copy = spooled(stream, head, self.folder)
            try:
                for no, data in enumerate(array_rows(copy), start=1):
                    yield ExportLine(name, no, data)
            finally:
                os.remove(copy)
            return
        yield from _lines(name, io.BufferedReader(_Prefixed(head, stream), 1 << 20))


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read: `head`, then the rest of `stream`."""

    def __init__(self, head: bytes, stream: Readable) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _lines(name: str, stream: Iterable[bytes]) -> Iterator[ExportLine]:
    for line_no, line in enumerate(stream, start=1):
        # As `run` does: a BOM that starts a line is no data.
        data = bytes(line_body(line.removesuffix(b"\n")))
        if data.strip():
            yield ExportLine(name, line_no, data)
