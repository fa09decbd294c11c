"""run.json: the one typed record of what a run was (`RunRecord`), its codec, and resume checks.

Everything that changes what a row means is in it (real or dry run, loop, inputs, input
format, worker layout, the command that wrote the folder); a resume that would change any
of it is refused with a sentence.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from replayer.config import Settings
from replayer.output.layout import PARTS_DIR, RUN
from replayer.output.sinks import write_atomic
from replayer.source import objects
from replayer.source.objects import is_url
from replayer.source.read import display_name, is_stream
from replayer.source.redact import shown_url

VERSION = 2
INPUT_FORMATS = ("ndjson",)
# The command that wrote a folder (`replayer WRITER`); only that command may continue it.
WRITERS = ("run", "spark", "merge")
_EDGE = 1 << 20  # bytes hashed at each end of an input file
# Deflate cannot expand more than ~1032:1, so a .gz of N bytes holds at most this many lines.
_GZ_MAX_RATIO = 1032


class ResumeError(Exception):
    """A resume that cannot go on safely (different run, nothing to resume, damaged files)."""


@dataclass(frozen=True, slots=True)
class InputPrint:
    """One input file as a run saw it: its name, size and a hash of its first and last MiB;
    for an object (a URL), its `identity` in the store (version, generation or ETag)."""

    file: str
    size: int
    sha256_edges: str
    identity: str | None = None  # None for a local file (whose run.json has no such key)

    def max_line_no(self) -> int:
        """The largest line number this file can hold (a line takes at least one byte)."""
        return self.size * _GZ_MAX_RATIO if self.file.endswith(".gz") else self.size

    def to_doc(self) -> dict[str, Any]:
        """The JSON object stored in run.json."""
        doc: dict[str, Any] = {"file": self.file, "size": self.size,
                               "sha256_edges": self.sha256_edges}
        if self.identity is not None:
            doc["identity"] = self.identity
        return doc


@dataclass(frozen=True, slots=True)
class Layout:
    """How the run was split: `workers` processes; `shard` "I/N" for one worker's own folder;
    `run_shard` "I/N" (1-based) for a run of `--shard I/N`."""

    workers: int = 1
    shard: str | None = None
    run_shard: str | None = None

    @staticmethod
    def worker(index: int, count: int) -> Layout:
        """The layout recorded in worker `index`'s folder (workers/I/) of a `count`-worker run."""
        return Layout(workers=count, shard=f"{index}/{count}")


def new_run_id() -> str:
    """A fresh run id (one per invocation; a parent's workers share it)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class RunRecord:
    """run.json: what a run was; `differences` compares two of them for a resume."""

    state: str
    endpoint: str
    dry_run: bool
    loop: bool
    inputs: tuple[InputPrint, ...] | None  # None: stdin or a pipe (cannot resume)
    layout: Layout = Layout()
    resume_with: str | None = None
    run_id: str = field(default_factory=new_run_id)
    input_format: str = "ndjson"
    writer: str | None = "run"  # one of WRITERS; None: written before run.json named it
    version: int = VERSION

    def with_state(self, state: str) -> RunRecord:
        """The same record in another state ("running", "finished", "interrupted", ...)."""
        return replace(self, state=state)

    def for_worker(self, index: int) -> RunRecord:
        """The record of worker `index`'s own folder: same run id, its shard of the layout."""
        return replace(self, layout=replace(Layout.worker(index, self.layout.workers),
                                            run_shard=self.layout.run_shard))

    def encode(self) -> bytes:
        """The bytes of run.json (indented JSON and a newline)."""
        doc = {
            "version": self.version, "run_id": self.run_id, "state": self.state,
            "endpoint": self.endpoint, "dry_run": self.dry_run, "loop": self.loop,
            "input_format": self.input_format,
            "inputs": None if self.inputs is None else [p.to_doc() for p in self.inputs],
            "layout": {"workers": self.layout.workers, "shard": self.layout.shard,
                       **({"run_shard": self.layout.run_shard} if self.layout.run_shard else {})},
            "resume_with": self.resume_with, "writer": self.writer,
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"

    @staticmethod
    def decode(data: bytes, *, path: Path | str) -> RunRecord:
        """Reads run.json's bytes; raises ResumeError naming `path` for anything invalid."""
        return _decode(data, str(path))


_FIELDS = {"version", "run_id", "state", "endpoint", "dry_run", "loop", "input_format",
           "inputs", "layout", "resume_with"}
_OPTIONAL = {"writer"}  # absent in folders written before it was kept
_HINT = "the folder cannot be resumed; start a new --out"


def _decode(data: bytes, path: str) -> RunRecord:
    def bad(what: str) -> ResumeError:
        return ResumeError(f"{path}: {what}; {_HINT}")

    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise bad(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    version = doc.get("version")
    if version != VERSION or isinstance(version, bool):
        raise bad(f"version {version!r} is not one this replayer reads (it writes {VERSION}); "
                  "it was written by another version of replayer")
    missing = sorted(_FIELDS - doc.keys())
    if missing:
        raise bad(f"missing field(s) {', '.join(missing)}")
    unknown = sorted(doc.keys() - _FIELDS - _OPTIONAL)
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)}")
    for name in ("run_id", "state", "endpoint"):
        _expect(doc[name], str, f"{name} must be a string", bad)
    for name in ("dry_run", "loop"):
        _expect(doc[name], bool, f"{name} must be true or false", bad)
    if doc["input_format"] not in INPUT_FORMATS:
        raise bad(f"input_format {doc['input_format']!r} is not one of {', '.join(INPUT_FORMATS)}")
    if doc["resume_with"] is not None:
        _expect(doc["resume_with"], str, "resume_with must be a string or null", bad)
    writer = doc.get("writer")
    if writer is not None and writer not in WRITERS:
        raise bad(f"writer {writer!r} is not one of {', '.join(WRITERS)}")
    return RunRecord(
        state=doc["state"], endpoint=doc["endpoint"], dry_run=doc["dry_run"], loop=doc["loop"],
        inputs=_decode_inputs(doc["inputs"], bad), layout=_decode_layout(doc["layout"], bad),
        resume_with=doc["resume_with"], run_id=doc["run_id"], input_format=doc["input_format"],
        writer=writer,
    )


def _expect(value: Any, kind: type, what: str, bad: Any) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(what)


_PRINT_KEYS = {"file", "size", "sha256_edges"}


def _decode_inputs(value: Any, bad: Any) -> tuple[InputPrint, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad("inputs must be a list or null")
    prints = []
    for n, item in enumerate(value, start=1):
        if (not isinstance(item, dict) or set(item) - {"identity"} != _PRINT_KEYS
                or not isinstance(item["file"], str) or not isinstance(item["sha256_edges"], str)
                or not isinstance(item["size"], int) or isinstance(item["size"], bool)
                or item["size"] < 0 or not isinstance(item.get("identity", ""), str)):
            raise bad(f"input {n} must be {{file: string, size: integer >= 0, "
                      "sha256_edges: string[, identity: string]}")
        prints.append(InputPrint(item["file"], item["size"], item["sha256_edges"],
                                 item.get("identity")))
    return tuple(prints)


def _decode_layout(value: Any, bad: Any) -> Layout:
    if not isinstance(value, dict) or set(value) - {"run_shard"} != {"workers", "shard"}:
        raise bad("layout must be {workers, shard} (and run_shard, optional)")
    workers, shard, run_shard = value["workers"], value["shard"], value.get("run_shard")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise bad("layout.workers must be an integer >= 1")
    if shard is not None and (not isinstance(shard, str) or not _is_shard(shard, workers)):
        raise bad(f"layout.shard must be null or \"I/{workers}\" with 0 <= I < {workers}")
    if run_shard is not None and (not isinstance(run_shard, str) or not _is_run_shard(run_shard)):
        raise bad("layout.run_shard must be \"I/N\" with 1 <= I <= N")
    return Layout(workers=workers, shard=shard, run_shard=run_shard)


def _is_run_shard(text: str) -> bool:
    index, _, count = text.partition("/")
    return (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)
            and text == f"{int(index)}/{int(count)}")


def _is_shard(text: str, workers: int) -> bool:
    index, _, count = text.partition("/")
    return (index.isdigit() and count.isdigit() and int(count) == workers
            and int(index) < workers and text == f"{int(index)}/{int(count)}")


def differences(previous: RunRecord, now: RunRecord) -> list[str]:
    """Why `now` cannot continue `previous`, one sentence per difference (empty: it can)."""
    found: list[str] = []
    if None not in (previous.writer, now.writer) and previous.writer != now.writer:
        found.append(f"the folder holds the outputs of `replayer {previous.writer}`, not of "
                     f"`replayer {now.writer}`")
    if previous.dry_run != now.dry_run:
        found.append(
            "the earlier run was a --dry-run; this one is real: a dry run's rows say nothing "
            "was sent, start a new --out" if previous.dry_run else
            "the earlier run was real; this one is a --dry-run: its rows would be mixed with "
            "real ones, drop --dry-run or start a new --out")
    if previous.loop != now.loop:
        found.append(
            "the earlier run used --loop; this one does not: a loop's passes have no fixed end"
            if previous.loop else
            "the earlier run did not use --loop; this one does: a loop run cannot resume")
    found.extend(_input_differences(previous, now))
    if previous.endpoint != now.endpoint:
        found.append(f"the earlier run was sending to {previous.endpoint}, not {now.endpoint}; "
                     f"resume it with --endpoint {previous.endpoint} (and the same credentials)")
    if previous.layout.run_shard != now.layout.run_shard:
        found.append(
            f"the earlier run was shard {previous.layout.run_shard} (--shard); resume it with "
            f"--shard {previous.layout.run_shard}" if previous.layout.run_shard else
            f"the earlier run was not a shard; this one is --shard {now.layout.run_shard}: "
            "drop --shard or start a new --out")
    if previous.layout.workers != now.layout.workers:
        found.append(f"the earlier run used {previous.layout.workers} worker(s); resume it with "
                     f"--workers {previous.layout.workers} (users are shared out by worker count)")
    elif previous.layout.shard != now.layout.shard:
        found.append(f"this folder holds the share of worker {previous.layout.shard or 'all'}, "
                     f"not of {now.layout.shard or 'all'}")
    return found


def _input_differences(previous: RunRecord, now: RunRecord) -> list[str]:
    if previous.input_format != now.input_format:
        return [(f"the earlier run read {previous.input_format} input; this one reads "
                 f"{now.input_format}: resume with the same input format")]
    if previous.inputs is None:
        return [("the earlier run read stdin or a pipe, which can be read only once: "
                 "it cannot resume, start a new --out")]
    if now.inputs is None:
        return [("this run reads stdin or a pipe, which can be read only once: it cannot "
                 "resume a run")]
    if previous.inputs == now.inputs:
        return []
    before = [p.file for p in previous.inputs]
    after = [p.file for p in now.inputs]
    if before != after:
        detail = f"it read {', '.join(before) or 'nothing'}, this one reads {', '.join(after)}"
    else:
        changed = [a.file for a, b in zip(previous.inputs, now.inputs, strict=True) if a != b]
        detail = f"{', '.join(changed)} changed since (size, content or object version)"
    return [(f"the input differs from the one the earlier run started with ({detail}); "
             "resume with the same files, unchanged, in the same order, or start a new --out "
             "folder")]


def fingerprints(paths: Sequence[str]) -> tuple[InputPrint, ...]:
    """Identifies the input: per file its name, size and a hash of its first and last MiB;
    per object its URL, size and identity in the store (ResumeError if it cannot be read)."""
    prints = []
    for path in paths:
        if is_url(path):
            prints.append(_object_print(path))
            continue
        if is_stream(path):
            raise ResumeError(f"{display_name(path)} can be read only once (stdin or a pipe), "
                              "so a run reading it cannot resume")
        size = os.path.getsize(path)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            digest.update(f.read(_EDGE))
            if size > _EDGE:
                f.seek(max(_EDGE, size - _EDGE))
                digest.update(f.read(_EDGE))
        prints.append(InputPrint(display_name(path), size, digest.hexdigest()))
    return tuple(prints)


def _object_print(url: str) -> InputPrint:
    """An object's print: its identity when the store gives one, else a hash of its edges.

    Named as rows name it (an https URL without its query), so that the same object
    signed afresh resumes the run its first signature started."""
    name = display_name(url)
    try:
        info = objects.stat(url)
        if info.identity is not None and info.size is not None:
            return InputPrint(name, info.size, "", info.identity)
        size, digest = objects.edges_digest(url, edge_bytes=_EDGE)
    except (objects.ObjectError, objects.ObjectsUnavailable) as exc:
        raise ResumeError(str(exc)) from None
    return InputPrint(name, size, digest, info.identity)


DEFAULT_PARENT = Path("replay-out")
_STEM_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_SUFFIXES = (".gz", ".ndjson", ".jsonl", ".json")


def folder_for(paths: Sequence[str], settings: Settings) -> Path | None:
    """The default --out of a run: named by what it reads and where it sends it, so the same
    command twice meets its own folder, and different inputs get different ones.

    Local files count by real path (through symlinks), size and edge hash; objects by their URL without its query
    (no request is made for it). None for stdin and pipes, whose content is new each time,
    and for a path that cannot be read (the run itself then says why).
    """
    if not paths or any(is_stream(p) for p in paths):
        return None
    parts: list[Any] = []
    try:
        for path in paths:
            if is_url(path):
                parts.append(shown_url(path))
            else:
                print_ = fingerprints([path])[0]
                parts.append([os.path.realpath(path), print_.size, print_.sha256_edges])
    except (ResumeError, OSError):
        return None
    parts += [settings.endpoint, settings.dry_run, settings.shard]
    digest = hashlib.sha256(orjson.dumps(parts)).hexdigest()[:12]
    return DEFAULT_PARENT / f"{_stem(paths[0])}-{digest}"


def _stem(path: str) -> str:
    name = shown_url(path).rstrip("/").rsplit("/", 1)[-1]
    while name.lower().endswith(_SUFFIXES):
        name = name[: name.rfind(".")]
    return _STEM_CHARS.sub("_", name).strip("._")[:40] or "input"


def fingerprints_or_none(paths: Sequence[str]) -> tuple[InputPrint, ...] | None:
    """The input's fingerprints, or None for stdin or a pipe (such a run cannot resume)."""
    if any(is_stream(p) for p in paths):
        return None
    return fingerprints(paths)


def read_run(out_dir: Path) -> RunRecord:
    """The RunRecord in `out_dir`; ResumeError if there is none or it is damaged."""
    path = out_dir / RUN
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ResumeError(f"{out_dir} holds no run to resume ({RUN} is missing)") from None
    except OSError as exc:
        raise ResumeError(f"{path} cannot be read: {exc.strerror}") from None
    return RunRecord.decode(data, path=path)


def check_resume(out_dir: Path, now: RunRecord) -> RunRecord:
    """The earlier run in `out_dir`, refused (ResumeError, every difference) unless `now` may
    continue it."""
    previous = read_run(out_dir)
    found = differences(previous, now)
    if found:
        raise ResumeError(f"cannot resume the run in {out_dir}: " + "; ".join(found))
    return previous


def check_writer(out_dir: Path, writer: str) -> None:
    """Refuses (ResumeError) a folder whose run.json says another command wrote it: that
    command's rows would be replaced and every record sent again, unmarked. A folder with
    no readable run.json is left to the other checks."""
    try:
        previous = read_run(out_dir).writer
    except ResumeError:
        return
    if previous is None and (out_dir / PARTS_DIR).is_dir():
        previous = "spark"  # written before run.json named its writer: only spark makes parts/
    if previous is not None and previous != writer:
        raise ResumeError(
            f"{out_dir} holds the outputs of `replayer {previous}`; `replayer {writer}` "
            "cannot continue them (it would send every record again, unmarked, and replace "
            "their rows): use another --out, or --overwrite to start over (removes "
            "replayer's files in it)")


def write_run(out_dir: Path, record: RunRecord) -> None:
    """Replaces `out_dir`/run.json with `record`, atomically; OutputError if it cannot."""
    write_atomic(out_dir / RUN, record.encode())


def record_for(settings: Settings, paths: Sequence[str], *, workers: int = 1,
               resume_with: str | None = None, shard: str | None = None) -> RunRecord:
    """The run.json of a new run of `paths` with `settings` in `workers` processes (of the
    `--shard` `shard`, "I/N", if given)."""
    return RunRecord(state="running", endpoint=settings.endpoint, dry_run=settings.dry_run,
                     loop=settings.loop, layout=Layout(workers=workers, run_shard=shard),
                     inputs=fingerprints_or_none(paths), resume_with=resume_with)
