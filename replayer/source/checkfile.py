"""`replayer validate`: every line checked as `run` would, nothing sent. Streams any size.

Invalid lines are reported as they are found; the tally (by kind, plus records and
distinct users) comes at the end. Users are counted by a 64-bit hash, 8 bytes each.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice

from replayer.records import RecordFailure
from replayer.source.read import ReadCounts, iter_lines
from replayer.source.validate import VALIDATION_KINDS, parse_lines

CHUNK_LINES = 2_000  # lines validated in one call (as `run` reads them)


@dataclass(slots=True)
class Tally:
    """What a validation pass found."""

    counts: ReadCounts = field(default_factory=ReadCounts)
    valid: int = 0
    invalid_by_kind: Counter[str] = field(default_factory=Counter)
    users: set[int] = field(default_factory=set)

    @property
    def invalid(self) -> int:
        """Lines that would fail validation."""
        return sum(self.invalid_by_kind.values())


def check_files(
    paths: Sequence[str], *, allow_unknown_fields: bool, max_line_bytes: int,
    on_invalid: Callable[[RecordFailure], None],
) -> Tally:
    """Validates every line of `paths`, calling `on_invalid` for each bad one, in order."""
    tally = Tally()
    now_s = time.time()
    lines = iter_lines(paths, max_line_bytes=max_line_bytes, counts=tally.counts)
    while chunk := list(islice(lines, CHUNK_LINES)):
        for parsed in parse_lines(chunk, allow_unknown_fields=allow_unknown_fields, now_s=now_s):
            if isinstance(parsed, RecordFailure):
                tally.invalid_by_kind[parsed.kind] += 1
                on_invalid(parsed)
                continue
            tally.valid += 1
            digest = hashlib.blake2b(parsed.lane.encode("utf-8", "surrogatepass"),
                                     digest_size=8)
            tally.users.add(int.from_bytes(digest.digest(), "little"))
    return tally


def kind_table(tally: Tally) -> list[str]:
    """Lines of a table of invalid lines by kind, in the validator's order of kinds."""
    rows = [(kind, tally.invalid_by_kind[kind]) for kind in VALIDATION_KINDS
            if tally.invalid_by_kind[kind]]
    width = max([len("kind"), *(len(k) for k, _ in rows)])
    lines = [f"{'kind':<{width}}  lines", f"{'-' * width}  -----"]
    lines += [f"{kind:<{width}}  {n:>5}" for kind, n in rows]
    lines.append(f"{'total':<{width}}  {tally.invalid:>5}")
    return lines
