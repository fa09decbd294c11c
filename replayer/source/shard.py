"""Which worker owns a line: a stable hash of its user, so per-user order holds by construction.

Pure. Every worker reads every line and keeps its own; a line with no usable user (not
JSON, not an object, no userId/deviceId string) belongs to worker 0, which reports it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import orjson

_BOM = b"\xef\xbb\xbf"


def owner(data: bytes, count: int) -> int:
    """The worker (0..count-1) that handles this input line."""
    if count == 1:
        return 0
    if data.startswith(_BOM):
        data = data[3:]
    try:
        record = orjson.loads(data.removesuffix(b"\r"))
    except orjson.JSONDecodeError:
        return 0
    if not isinstance(record, dict):
        return 0
    key = record.get("userId") or record.get("deviceId")
    if not isinstance(key, str):
        return 0
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % count


@dataclass(frozen=True, slots=True)
class Shard:
    """This process's share of the users: worker `index` of `count`."""

    index: int
    count: int

    def owns(self, data: bytes) -> bool:
        """True when this worker handles the line."""
        return owner(data, self.count) == self.index
