"""`ConvertSummary`: what a conversion read, wrote and refused, in total and per source file.

The one place that knows the fields of FILE.summary.json and of the stderr summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from replayer.source.convert.clock import LocalTimes
from replayer.source.convert.events import FieldTally


@dataclass(slots=True)
class FileCounts:
    """One input file's (or zip member's) share of the totals."""

    file: str
    events_read: int = 0
    sessions: int = 0  # sessions whose first event came from this file
    duplicates: int = 0  # copies of an event read earlier (by time), dropped
    rejects: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class ConvertSummary:
    """Running totals of one conversion; `encode()` is FILE.summary.json."""

    source: str
    session_gap_s: float
    memory_limit: str
    events_read: int = 0
    events_in_sessions: int = 0
    sessions_written: int = 0
    duplicates: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    fields: FieldTally = field(default_factory=FieldTally)
    files: list[FileCounts] = field(default_factory=list)
    local_times: LocalTimes | None = None  # event times that look like a local wall clock

    @property
    def events_rejected(self) -> int:
        """Events written to the rejects file."""
        return sum(self.rejects.values())

    @property
    def all_kept(self) -> bool:
        """Every event is in a session written, and no attribute was dropped (exit code 0)."""
        return not self.rejects and not self.fields.dropped

    def reject(self, file_no: int, reason: str, *, events: int = 1) -> None:
        """Counts rejected events of file `file_no` (a refused session's, or one)."""
        self.rejects[reason] = self.rejects.get(reason, 0) + events
        per_file = self.files[file_no].rejects
        per_file[reason] = per_file.get(reason, 0) + events

    def drop_duplicates(self, file_no: int, count: int) -> None:
        """Counts copies of file `file_no` that were dropped as duplicates."""
        self.duplicates += count
        self.files[file_no].duplicates += count

    def encode(self) -> dict[str, Any]:
        """The summary as JSON-ready data, keys in a fixed order (same input, same bytes)."""
        tally = self.fields
        return {
            "source": self.source,
            "session_gap_s": self.session_gap_s,
            "memory_limit": self.memory_limit,
            "events_read": self.events_read,
            "events_in_sessions": self.events_in_sessions,
            "events_rejected": self.events_rejected,
            "duplicates": self.duplicates,
            "sessions_written": self.sessions_written,
            "rejects": dict(sorted(self.rejects.items())),
            "unmapped": {
                name: {"count": count, "examples": tally.examples.get(name, [])}
                for name, count in sorted(tally.unmapped.items())
            },
            "renamed_attributes": dict(sorted(tally.renamed.items())),
            "dropped_attributes": dict(sorted(tally.dropped.items())),
            "local_times": None if self.local_times is None else self.local_times.encode(),
            "files": [
                {"file": f.file, "events_read": f.events_read, "sessions": f.sessions,
                 "duplicates": f.duplicates, "rejects": dict(sorted(f.rejects.items()))}
                for f in self.files
            ],
        }

    def lines(self) -> list[str]:
        """The human summary for stderr."""
        out = [
            (f"{self.source}: {self.events_read} events read from {len(self.files)} file(s): "
             f"{self.events_in_sessions} in {self.sessions_written} sessions, "
             f"{self.events_rejected} rejected, {self.duplicates} duplicates dropped"),
        ]
        if self.rejects:
            out.append("  rejects: " + ", ".join(
                f"{reason} {count}" for reason, count in sorted(self.rejects.items())))
        for name, count in sorted(self.fields.unmapped.items()):
            examples = ", ".join(repr(e) for e in self.fields.examples.get(name, []))
            out.append(f"  not mapped: {name} in {count} session(s), e.g. {examples}")
        if self.local_times is not None:
            out.append(self.local_times.line())
        for old, new in sorted(self.fields.renamed.items()):
            out.append(f"  renamed attribute {old!r} -> {new!r}")
        for name, count in sorted(self.fields.dropped.items()):
            out.append(f"  dropped attribute {name!r} in {count} session(s): it names a "
                       "secret or configuration field")
        return out
