"""The simulator's internal call: compact, epoch seconds, turned into rows or CallRecords late."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

TIMEZONE = "Europe/Amsterdam"
TZ = ZoneInfo(TIMEZONE)

# Disposition codes (one letter keeps the hot loops cheap).
ANSWERED = "A"
NO_ANSWER = "N"
BUSY = "B"
FAILED = "F"
CONGESTION = "C"


class SimCall:
    """One simulated call. Times are UTC epoch seconds; ``answer`` is None when unanswered."""

    __slots__ = (
        "account",
        "answer",
        "callee",
        "callee_e164",
        "caller",
        "caller_e164",
        "channel",
        "clid_name",
        "context",
        "disposition",
        "dst_channel",
        "end",
        "inbound",
        "order",
        "scenario",
        "start",
        "uid",
    )

    def __init__(
        self,
        start: int,
        answer: int | None,
        end: int,
        account: str,
        caller: str,
        callee: str,
        caller_e164: str | None,
        callee_e164: str | None,
        disposition: str,
        channel: str,
        dst_channel: str,
        clid_name: str = "",
        context: str = "from-internal",
        inbound: bool = False,
        scenario: str = "normal",
    ) -> None:
        self.start = start
        self.answer = answer
        self.end = end
        self.account = account
        self.caller = caller
        self.callee = callee
        self.caller_e164 = caller_e164
        self.callee_e164 = callee_e164
        self.disposition = disposition
        self.channel = channel
        self.dst_channel = dst_channel
        self.clid_name = clid_name
        self.context = context
        self.inbound = inbound
        self.scenario = scenario
        self.order = 0
        self.uid = ""

    @property
    def duration(self) -> int:
        return self.end - self.start

    @property
    def billsec(self) -> int:
        return 0 if self.answer is None else self.end - self.answer


def ordered(chunks: Iterable[list[SimCall]], bounds: Iterable[int]) -> Iterator[SimCall]:
    """Calls in end order, from chunks of calls whose starts lie below the matching bound.

    Chunk ``i`` holds calls that start before ``bounds[i]`` and at or after the previous
    bound, so once a chunk is in, every call ending before its bound is final.
    """
    heap: list[tuple[int, int, SimCall]] = []
    seq = 0
    for chunk, bound in zip(chunks, bounds, strict=True):
        for call in chunk:
            seq += 1
            call.order = seq
            heapq.heappush(heap, (call.end, seq, call))
        while heap and heap[0][0] < bound:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def sort_calls(calls: list[SimCall]) -> list[SimCall]:
    calls.sort(key=lambda c: (c.end, c.start, c.callee, c.caller))
    for i, call in enumerate(calls):
        call.order = i
    return calls


# -- time helpers -------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _offset_for_hour(hour_bucket: int) -> int:
    moment = datetime.fromtimestamp(hour_bucket * 3600, UTC).astimezone(TZ)
    offset = moment.utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


@lru_cache(maxsize=4096)
def _day_string(day_number: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day_number)).isoformat()


def local_string(epoch: int) -> str:
    """'YYYY-MM-DD HH:MM:SS' in Europe/Amsterdam, as Asterisk and FreeSWITCH write it."""
    local = epoch + _offset_for_hour(epoch // 3600)
    day, secs = divmod(local, 86400)
    hours, rest = divmod(secs, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{_day_string(day)} {hours:02d}:{minutes:02d}:{seconds:02d}"


def local_iso(epoch: int) -> str:
    """ISO 8601 with the Amsterdam offset, e.g. '2026-10-16T19:42:10+02:00'."""
    return datetime.fromtimestamp(epoch, UTC).astimezone(TZ).isoformat()


@lru_cache(maxsize=2048)
def local_midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=TZ).timestamp())


def local_epoch(day: date, second_of_day: int) -> int:
    """Epoch seconds of a local wall-clock time (DST handled by zoneinfo)."""
    hours, rest = divmod(second_of_day, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours >= 24:
        day = day + timedelta(days=hours // 24)
        hours %= 24
    return int(
        datetime(day.year, day.month, day.day, hours, minutes, seconds, tzinfo=TZ).timestamp()
    )


def to_utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
