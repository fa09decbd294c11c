"""The three files a conversion writes, and the check that none of them is an input or
another of them (which would replace an export, or leave one output in place of two).

Files are compared by identity (st_dev, st_ino: any spelling, symlink or hard link) when
they exist, and by resolved path when they do not yet.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from replayer.output.layout import file_id
from replayer.source.convert.readers import STDIN
from replayer.source.objects import is_url

STDOUT = "-"
PART_SUFFIX = ".part"  # each file is written as NAME.part, renamed into place when complete

# A file's identity: (st_dev, st_ino) when it exists, else its resolved path.
Identity = tuple[int, int] | str


@dataclass(frozen=True, slots=True)
class Outputs:
    """Where the records (a path, or '-' for stdout), the rejects and the summary go."""

    records: str
    rejects: str
    summary: str

    @classmethod
    def named(cls, output: str, *, rejects: str | None, summary: str | None) -> Outputs:
        """-o, --rejects and --summary, the last two defaulting to names beside the first."""
        base = "convert" if output == STDOUT else output
        return cls(output, rejects or f"{base}.rejects.ndjson",
                   summary or f"{base}.summary.json")

    def labelled(self) -> Iterator[tuple[str, str | None]]:
        """(how a message names it, its path or None for stdout) of each output."""
        yield f"-o {self.records}", None if self.records == STDOUT else self.records
        yield f"the rejects file {self.rejects}", self.rejects  # never stdout: a file "-"
        yield f"the summary file {self.summary}", self.summary


def stream_identity(stream: BinaryIO) -> Identity | None:
    """The identity of the regular file behind stdin or stdout, else None (a pipe, a tty)."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no file descriptor (a test's buffer) or closed
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _identity(path: str) -> Identity:
    try:
        return file_id(path)
    except OSError:
        return os.path.realpath(path)


def harm(outputs: Outputs, inputs: Sequence[str], *, stdin: Identity | None,
         stdout: Identity | None) -> str | None:
    """Why writing `outputs` would harm an input or another output (one line), or None.

    Each output also occupies its NAME.part while it is written. `stdin` and `stdout` are
    the identities of the files behind them (stream_identity), for '-' as input or -o.
    """
    read: dict[Identity, str] = {}
    for path in inputs:
        if is_url(path):  # an object is never a local output
            continue
        identity = stdin if path == STDIN else _identity(path)
        if identity is not None:
            read.setdefault(identity, "stdin" if path == STDIN else path)
    written: dict[Identity, str] = {}
    for label, target in outputs.labelled():
        if target is None:
            occupied = [(stdout, f"{label} (stdout)")] if stdout is not None else []
        else:
            occupied = [(_identity(target), label),
                        (_identity(target + PART_SUFFIX), f"{label} (written as {target}.part)")]
        for identity, what in occupied:
            if identity in read:
                return f"{what} is the input {read[identity]}: convert never writes over an input"
            if identity in written:
                return f"{written[identity]} and {what} are the same file: name different files"
        written.update(occupied)
    return None
