"""The UTC offset of a time zone by event time, for the engine's per-account clocks."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


class ZoneOffsets:
    """UTC offset of one time zone by epoch second, cached per 15 minutes (zone
    transitions fall on quarter hours); records arrive in time order, so the last
    bucket almost always answers."""

    __slots__ = ("bucket", "cache", "offset", "tz")

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.bucket = -1
        self.offset = 0.0
        self.cache: dict[int, float] = {}

    def at(self, ts: float) -> float:
        bucket = int(ts // 900)
        if bucket == self.bucket:
            return self.offset
        off = self.cache.get(bucket)
        if off is None:
            delta = datetime.fromtimestamp(bucket * 900, self.tz).utcoffset()
            off = delta.total_seconds() if delta else 0.0
            if len(self.cache) > 50_000:
                self.cache.clear()
            self.cache[bucket] = off
        self.bucket, self.offset = bucket, off
        return off
