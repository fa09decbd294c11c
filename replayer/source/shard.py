"""Which shard and worker own a line: a stable hash of its user, so per-user order holds.

Pure. Every process reads every line and keeps its own; a line with no usable user (not
JSON, not an object, no userId/deviceId string) hashes to 0: shard 1 and worker 0 own it
and report it. Splits compose: `--shard I/N` keeps the users whose hash is I-1 modulo N,
and its W workers split those by `(hash // N) % W`, so every user lands in exactly one
(shard, worker) whatever N and W are.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import orjson

from replayer.records import line_body


def user_hash(data: bytes) -> int:
    """The stable hash of the line's user (crc32 of userId, else deviceId); 0 without one."""
    try:
        record = orjson.loads(line_body(data))
    except orjson.JSONDecodeError:
        return 0
    if not isinstance(record, dict):
        return 0
    key = record.get("userId") or record.get("deviceId")
    if not isinstance(key, str):
        return 0
    return zlib.crc32(key.encode("utf-8", "surrogatepass"))


def owner(data: bytes, count: int) -> int:
    """The share (0..count-1) that handles this input line in a split into `count`."""
    if count == 1:
        return 0
    return user_hash(data) % count


@dataclass(frozen=True, slots=True)
class Shard:
    """This process's share of the users: share `index` (0-based) of `count`, taken out of
    the share `outer` (a `--shard`) when there is one."""

    index: int
    count: int
    outer: Shard | None = None

    def owns(self, data: bytes) -> bool:
        """True when this process handles the line."""
        if self.count == 1 and self.outer is None:
            return True
        return self.holds(user_hash(data))

    def holds(self, hash_: int) -> bool:
        """True when a user of this hash is this process's."""
        if self.outer is not None and not self.outer.holds(hash_):
            return False
        return (hash_ // self.stride()) % self.count == self.index

    def holds_key(self, key: str) -> bool:
        """True when the user of this key (its userId, else its deviceId) is this process's."""
        return self.holds(zlib.crc32(key.encode("utf-8", "surrogatepass")))

    def stride(self) -> int:
        """The product of the counts of the splits this one is taken from."""
        return self.outer.count * self.outer.stride() if self.outer is not None else 1

    def within(self, index: int, count: int) -> Shard:
        """Share `index` of `count` of this shard's users (a worker of a `--shard` run)."""
        return Shard(index, count, outer=self)

    @property
    def label(self) -> str:
        """"I/N" as `--shard` spells it (1-based)."""
        return f"{self.index + 1}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`--shard I/N` (1 <= I <= N) as a Shard; ValueError with a sentence otherwise."""
    index, slash, count = text.strip().partition("/")
    if not (slash and index.isascii() and index.isdigit() and count.isascii()
            and count.isdigit()):
        raise ValueError(f"--shard {text!r} must be I/N, two whole numbers (e.g. 1/4)")
    i, n = int(index), int(count)
    if n < 1:
        raise ValueError(f"--shard {text!r}: N must be at least 1")
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: I must be from 1 to {n} (shards count from 1)")
    return Shard(i - 1, n)


def shard_label(text: str | None) -> str | None:
    """A `--shard` setting as its record spells it ("I/N"), or None without one."""
    return parse_shard(text).label if text is not None else None
