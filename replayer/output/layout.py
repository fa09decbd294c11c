"""The output folder: the names of replayer's files in it, choosing it, and readying it for a run.

Inputs are never harmed: an input that is (or would become) one of replayer's files in
the folder is refused, and --overwrite removes replayer's own files only.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from replayer.output.sinks import OutputError
from replayer.source.objects import is_url
from replayer.source.read import STDIN

if TYPE_CHECKING:
    from replayer.output.lock import FolderLock

RESULTS = "results.ndjson"
FAILURES = "failures.ndjson"
SUMMARY = "summary.json"
METRICS = "metrics.ndjson"
REQUESTS = "requests.ndjson"  # --dry-run: every body that would have been sent
JOURNAL = "journal.log"
RUN = "run.json"
USERS = "users.ndjson"  # one row per user, what the rows say of each (output.users)
OUR_FILES = (RESULTS, FAILURES, SUMMARY, METRICS, REQUESTS, USERS, JOURNAL, RUN)
WORKERS_DIR = "workers"  # one folder per worker process, merged into the files above
USERS_PART = "users-part.ndjson"  # a worker's users, in order, for its parent's merge
PARTS_DIR = "parts"  # `replayer spark`: one folder per partition, merged likewise
LOCK = ".replayer.lock"  # held by the run in the folder; never removed (see output.lock)
TMP_SUFFIX = ".tmp"  # an atomic replace writes NAME.tmp first
REPORT_FILES = ("report.html", "report-*.png")  # `replayer report`'s, removed by --overwrite
# Scratch files of output.users, report.build and engine.spill while they write.
SCRATCH_FILES = (".users-*.tmp", ".report*.tmp", ".replayer-spill-*")


class OutDirError(Exception):
    """The output folder cannot be used as asked (exists and is not empty, ...)."""


def file_id(path: str) -> tuple[int, int]:
    """The identity of the file at `path` (symlinks followed): (st_dev, st_ino)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def repeated_input(paths: Sequence[str]) -> tuple[str, str] | None:
    """Two of `paths` that are one file (same path, ./ spelling, symlink, hard link), or None."""
    seen: dict[tuple[int, int], str] = {}
    for path in paths:
        if path == STDIN:
            continue
        key = file_id(path)
        if key in seen:
            return seen[key], path
        seen[key] = path
    return None


def is_ours(relative: PurePath) -> bool:
    """Whether replayer writes or removes this path of its folder (the lock file included)."""
    parts = relative.parts
    if not parts:
        return False
    if parts[0] in (WORKERS_DIR, PARTS_DIR):
        return True
    if len(parts) > 1:
        return False
    name = parts[0]
    if any(fnmatch.fnmatchcase(name, p) for p in SCRATCH_FILES):
        return True
    name = name.removesuffix(TMP_SUFFIX)
    return name in (*OUR_FILES, LOCK) or any(fnmatch.fnmatchcase(name, p) for p in REPORT_FILES)


def choose_out_dir(
    out_dir: Path | None, *, inputs: Sequence[str], resume: bool, now_s: float,
    default: Path | None = None,
) -> Path:
    """The folder this run writes to, created if needed; nothing in it is touched yet.

    Without --out: `default` (named by the inputs, runfile.folder_for), or for stdin and
    pipes a new timestamped folder under ./replay-out/. Refuses a resume without an
    existing folder, a path that is not a folder, and inputs that are replayer's files in it.
    """
    if out_dir is None and default is not None:
        out_dir = default
    elif out_dir is None:
        if resume:
            raise OutDirError("--resume needs --out: the folder of the run to continue")
        out_dir = _new_folder(now_s)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutDirError(f"--out {out_dir} is not a folder")
    if resume and not out_dir.is_dir():
        raise OutDirError(f"--resume: {out_dir} does not exist")
    if out_dir.is_dir():
        check_inputs(out_dir, inputs)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror}") from None
    return out_dir


def _new_folder(now_s: float) -> Path:
    stamp = datetime.fromtimestamp(now_s, UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path("replay-out") / stamp
    n = 1
    while out_dir.exists():
        n += 1
        out_dir = Path("replay-out") / f"{stamp}-{n}"
    return out_dir


def check_inputs(out_dir: Path, inputs: Sequence[str]) -> None:
    """Refuses (OutDirError) an input that is a file replayer writes or removes in `out_dir`.

    By name through realpath (a file replayer would create or replace) and by identity
    (st_dev, st_ino: a symlink or hard link to an input among replayer's files).
    """
    real_out = Path(os.path.realpath(out_dir))
    ours = {file_id(str(p)): p for p in _existing_ours(out_dir)}
    for path in inputs:
        if path == STDIN or is_url(path):  # an object is never one of our files
            continue
        real = Path(os.path.realpath(path))
        target = ours.get(file_id(path))
        if target is None and real.is_relative_to(real_out) and is_ours(real.relative_to(real_out)):
            target = out_dir / real.relative_to(real_out)
        if target is not None:
            raise OutDirError(
                f"input {path} is {target}, a file replayer writes in its output folder "
                f"(or removes with --overwrite); move the input out of {out_dir} or use "
                "another --out"
            )


def _existing_ours(out_dir: Path) -> Iterator[Path]:
    """Replayer's files that exist in the folder (symlinks whose target exists included)."""
    for entry in out_dir.iterdir():
        if not is_ours(PurePath(entry.name)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            yield from (p for p in entry.rglob("*") if p.exists() and not p.is_dir())
        elif entry.exists():
            yield entry


RUN_CHOICES = "use --resume to continue the run in it, --overwrite to start over, or another --out"


def prepare_out_dir(lock: FolderLock, *, resume: bool, overwrite: bool,
                    choices: str = RUN_CHOICES) -> Path:
    """Readies the locked folder: continued (resume), refused if not empty, or cleared (overwrite).

    Runs under the folder's lock, so no other run is reading or writing it. --overwrite
    removes replayer's own files only (never the lock, never anything else). `choices` is
    what the refusal suggests: only flags the calling command has.
    """
    if not lock.held:
        raise RuntimeError("prepare_out_dir needs the folder's lock held")
    out_dir = lock.folder
    if resume:
        return out_dir
    if any(entry.name != LOCK for entry in out_dir.iterdir()):
        if not overwrite:
            raise OutDirError(f"{out_dir} is not empty; {choices}")
        _remove_ours(out_dir)
        for name in (WORKERS_DIR, PARTS_DIR):
            folders = out_dir / name
            if folders.is_dir() and not folders.is_symlink():
                for folder in folders.iterdir():
                    if folder.is_dir() and not folder.is_symlink():
                        _remove_ours(folder)
                        _rmdir_if_empty(folder)
                _rmdir_if_empty(folders)
    return out_dir


def _remove_ours(folder: Path) -> None:
    """Removes replayer's files in `folder` (files and symlinks only; a symlink's target stays)."""
    for entry in folder.iterdir():
        name = entry.name
        if name in (LOCK, WORKERS_DIR, PARTS_DIR) or not is_ours(PurePath(name)):
            continue
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
        else:
            raise OutDirError(f"{entry} is in the way and is not a file replayer wrote; move it")


def _rmdir_if_empty(folder: Path) -> None:
    if not any(folder.iterdir()):
        folder.rmdir()
