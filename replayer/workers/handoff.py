"""Handing a worker its settings, run id, inputs and client key over an inherited pipe.

Nothing secret (the key, a signed input URL) goes into a worker's argv or environment
(both readable in /proc): the
parent writes one JSON document into a pipe before the spawn, the worker inherits the
read end (its number is on argv), reads it to the end once and closes it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from replayer.config import Secret, Settings
from replayer.output.runfile import ResumeError, RunRecord

# Variables that may hold the key (the user's, and those of older replayer parents).
SECRET_ENV = ("LEANPLUM_CLIENT_KEY", "REPLAYER_CLIENT_KEY",
              "REPLAYER_WORKER_CLIENT_KEY", "REPLAYER_WORKER_SETTINGS")
_PATH_FIELDS = ("out_dir", "client_key_file")
_PIPE_MAX = 1 << 20  # Linux lets an unprivileged process grow a pipe to 1 MiB


class HandoffError(Exception):
    """The worker's hand-off could not be read (the parent died, or it is not one)."""


@dataclass(frozen=True, slots=True)
class Handoff:
    """What a worker is given: its settings (the client key among them), its run.json and
    the inputs to read (URLs whole: a signed one's query is a credential).

    The record comes from the parent: it names the endpoint as the user gave it (the
    embedded emulator's URL changes every session) and the run id all workers share.
    """

    settings: Settings
    record: RunRecord
    paths: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """The document written into the pipe (holds the key: never log it)."""
        doc: dict[str, Any] = {f.name: getattr(self.settings, f.name)
                               for f in dataclasses.fields(Settings) if f.name != "client_key"}
        for name in _PATH_FIELDS:
            doc[name] = str(doc[name]) if doc[name] is not None else None
        key = self.settings.client_key
        return orjson.dumps({"settings": doc, "record": orjson.loads(self.record.encode()),
                             "paths": list(self.paths),
                             "client_key": key.reveal() if key is not None else None})

    @staticmethod
    def decode(data: bytes) -> Handoff:
        """A hand-off read back; HandoffError for anything else (the message holds no data)."""
        try:
            doc = orjson.loads(data)
            settings: dict[str, Any] = dict(doc["settings"])
            record = RunRecord.decode(orjson.dumps(doc["record"]), path="<hand-off>")
            key = doc["client_key"]
            paths = tuple(str(p) for p in doc["paths"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ResumeError):
            raise HandoffError("the hand-off from the parent is not one (cut short?)") from None
        for name in _PATH_FIELDS:
            settings[name] = Path(settings[name]) if settings[name] is not None else None
        settings["fail_if"] = tuple(settings.get("fail_if", ()))
        return Handoff(Settings(**settings, client_key=Secret(key) if key else None), record,
                       paths)


class HandoffPipe:
    """One worker's pipe: filled before the spawn; `fd` goes to pass_fds, `close()` after it."""

    def __init__(self, handoff: Handoff) -> None:
        data = handoff.encode()
        if len(data) > _PIPE_MAX:
            raise HandoffError(f"the settings for a worker are too large ({len(data)} bytes)")
        self.fd, write_fd = os.pipe()
        try:
            if len(data) > 60_000:  # beyond the default 64 KiB, the write below would block
                fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _PIPE_MAX)
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view):]
        finally:
            os.close(write_fd)  # the reader sees the end of the document at EOF

    def close(self) -> None:
        """Closes the parent's copy of the read end (the worker holds its own)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def receive(fd: int) -> Handoff:
    """In the worker: reads the hand-off from inherited `fd` to its end, then closes it."""
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    except OSError as exc:
        raise HandoffError(f"cannot read the hand-off from the parent: {exc.strerror}") from None
    finally:
        os.close(fd)
    return Handoff.decode(b"".join(chunks))


def worker_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for a worker: the parent's without any variable that may hold the key."""
    return {name: value for name, value in environ.items() if name not in SECRET_ENV}
