"""Consume CDRs from a NATS JetStream durable pull consumer.

A message body is one CDR line, several lines (JSON Lines or CSV lines), or a JSON list
of record objects.

How messages flow (``consume``):

* **Pull ahead.** A ``_Puller`` keeps pull requests (``batch`` messages each, expiring
  after ``pull_expires`` s on the server) outstanding on the consumer's NEXT subject,
  replies go to one inbox subscription whose callback only appends to a buffer. Messages
  keep arriving while the previous batch is priced and committed (in a worker thread),
  and no fetch ever waits out a timeout for a batch to fill up.
* **Batches.** The writer takes what is buffered (at most ``batch`` messages), prices and
  commits it in one transaction, and only then acknowledges every message of it (explicit
  acks, written in one go and flushed once per batch). A crash before the ack makes
  JetStream redeliver after ``ack_wait``; the records are already stored under their
  stable ids, so the redelivery counts as duplicates.
* **Why explicit acks, not AckAll.** With ``ack_policy=all`` an ack of consumer sequence
  S also acknowledges every delivery below S, including messages a crashed earlier
  process received but never committed; those would be lost. Explicit acks confirm
  exactly the messages whose records are committed.
* **Backpressure.** Fetched-but-uncommitted messages (buffer plus outstanding requests)
  stay below ``prefetch_batches`` x ``batch``; ``max_ack_pending`` (default 4 x batch,
  at least 20,000) is above that bound, so the server never stalls the consumer while
  it keeps up, and a slow database slows consumption instead of growing memory.
* **Shutdown.** ``stop``: no new pull requests, the inbox subscription is drained (what
  was delivered is committed and acknowledged), the connection flushed and closed.
  Messages the server still sends to the expired inbox come back after ``ack_wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl

from tollguard.cdr.blocks import decode
from tollguard.cdr.detect import CdrFormatError
from tollguard.cdr.model import RECORD_SCHEMA
from tollguard.ingest.core import Ingestor, IngestResult
from tollguard.ingest.lines import LineParser
from tollguard.store.records import QuarantineEntry

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

log = logging.getLogger(__name__)


@dataclass
class NatsOptions:
    servers: str = "nats://127.0.0.1:4222"
    stream: str = "CDRS"
    subject: str = "cdrs.>"
    durable: str = "tollguard"
    fmt: str = "auto"
    batch: int = 10_000  # most messages per pull request and per transaction
    batch_bytes: int = 16 << 20  # a transaction also ends after this many message bytes
    pull_expires: float = 2.0  # seconds a pull request waits on the server for messages
    ack_wait: float = 30.0
    max_ack_pending: int = 0  # 0: 4 x batch, at least 20,000
    prefetch_batches: int = 2  # fetched-but-uncommitted messages < prefetch_batches x batch
    idle_check: float = 0.25  # with ``once``: quiet seconds before asking what is pending
    create_stream: bool = True

    @property
    def ack_pending_limit(self) -> int:
        return self.max_ack_pending or max(20_000, 4 * self.batch)


@dataclass
class NatsStats:
    result: IngestResult
    messages: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


def message_lines(body: bytes) -> tuple[str, list[str], str | None]:
    """Split one message body: (kind, lines, problem). kind is "json" or "text"."""
    text = decode(body).lstrip("\ufeff")
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            return "json", [stripped], f"message is not a valid JSON list: {exc}"
        if not isinstance(items, list):
            return "json", [stripped], "message is not a JSON list"
        return "json", [orjson.dumps(item).decode() for item in items], None
    lines = [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()]
    kind = "json" if stripped.startswith("{") else "text"
    return kind, lines, None


def stream_sequence(msg: Msg) -> int:
    """The message's stream sequence from its ack subject (``msg.metadata`` parses every
    field into objects: ~10x slower on the hot path)."""
    tokens = msg.reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[5])
    if len(tokens) >= 11:  # $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>...
        return int(tokens[7])
    return int(msg.metadata.sequence.stream)


class NatsBatchParser:
    """Turns a batch of messages into records and quarantine entries."""

    def __init__(self, ingestor: Ingestor, options: NatsOptions) -> None:
        self.ingestor = ingestor
        self.options = options
        self.source = f"nats:{options.stream}"
        self._parsers: dict[str, LineParser] = {}

    def _parser(self, kind: str, sample: Sequence[str]) -> LineParser:
        fmt = "jsonl" if kind == "json" else self.options.fmt
        parser = self._parsers.get(kind)
        if parser is None:
            parser = LineParser.for_sample(
                sample,
                fmt,
                self.ingestor.policy.dialing_context(),
                source_file=self.source,
                assume_utc=self.ingestor.assume_utc,
            )
            if parser.header_line:
                raise CdrFormatError(
                    f"{parser.format} needs a header line; send headerless lines "
                    "(asterisk-csv, freeswitch-csv) or JSON records over NATS"
                )
            self._parsers[kind] = parser
        return parser

    def parse(
        self, bodies: Sequence[tuple[int, bytes]]
    ) -> tuple[pl.DataFrame, list[QuarantineEntry]]:
        """``bodies``: (stream sequence, data). Records carry the sequence as source_line."""
        by_kind: dict[str, list[tuple[int, int, str]]] = {"json": [], "text": []}
        quarantine: list[QuarantineEntry] = []
        for seq, data in bodies:
            kind, lines, problem = message_lines(data)
            if problem is not None:
                quarantine.append(QuarantineEntry(self.source, seq, problem, lines[0], "jsonl"))
                continue
            by_kind[kind].extend((seq, i, line) for i, line in enumerate(lines))
        frames: list[pl.DataFrame] = []
        for kind, rows in by_kind.items():
            if not rows:
                continue
            try:
                parser = self._parser(kind, [r[2] for r in rows[:50]])
            except CdrFormatError as exc:
                quarantine.extend(
                    QuarantineEntry(
                        self.source, seq, str(exc), line, self.options.fmt, None, str(i)
                    )
                    for seq, i, line in rows
                )
                continue
            raw_lines = [r[2] for r in rows]
            if kind == "text":  # one block of lines: the readers' fast splitting path
                block = ("\n".join(raw_lines) + "\n").encode("utf-8")
                parsed = parser.parse_bytes(block, 1, len(rows))
            else:
                frame = pl.DataFrame(
                    {
                        "_line": pl.Series(range(1, len(rows) + 1), dtype=pl.Int64),
                        "_raw": raw_lines,
                    }
                )
                parsed = parser.parse_frame(frame)
            seqs = pl.Series([r[0] for r in rows], dtype=pl.Int64)
            for q in parsed.quarantined:
                seq, i, _raw = rows[q.line - 1]
                quarantine.append(
                    QuarantineEntry(self.source, seq, q.reason, q.raw, parsed.format, None, str(i))
                )
            if parsed.frame.height:
                records = parsed.frame.with_columns(
                    source_line=seqs.gather(parsed.frame.get_column("source_line") - 1)
                )
                frames.append(records)
        records = pl.concat(frames) if frames else pl.DataFrame(schema=RECORD_SCHEMA)
        return records, quarantine


@dataclass(slots=True)
class _Request:
    reply: str
    remaining: int
    deadline: float


class _Puller:
    """Keeps one pull request outstanding on the consumer and buffers what it delivers.

    One request at a time makes the accounting exact: every data message belongs to the
    current request (the server may interleave several), so it is over when it has
    delivered ``size`` messages, or when the server ends it (404 / 408 / 409 status sent
    to its own reply subject), or when its expiry has passed (lost in a reconnect). The
    next one is sent at once, while the writer is still committing: one round trip of
    gap per ``batch`` messages."""

    def __init__(self, nc: Client, next_subject: str, inbox: str, options: NatsOptions) -> None:
        self.nc = nc
        self.next_subject = next_subject
        self.inbox = inbox
        self.batch = options.batch
        self.limit = max(1, options.prefetch_batches) * options.batch
        self.expires = options.pull_expires
        self.buffer: deque[Msg] = deque()
        self.current: _Request | None = None
        self.arrived = asyncio.Event()
        self.room = asyncio.Event()
        self.last_arrival = time.monotonic()
        self.error: Exception | None = None
        self._n = 0

    async def on_msg(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get("Status") if headers else None
        current = self.current
        if status is None:
            self.buffer.append(msg)
            self.last_arrival = time.monotonic()
            if current is not None:
                current.remaining -= 1
                if current.remaining <= 0:
                    self.current = None
                    self.room.set()
            self.arrived.set()
            return
        if status == "100":  # idle heartbeat / flow control
            return
        if current is not None and msg.subject == current.reply:
            self.current = None  # 404 no messages, 408 expired, 409 conflict: request over
            self.room.set()
        if status in ("404", "408"):
            return
        description = headers.get("Description", "") if headers else ""
        if status == "409" and ("Deleted" in description or "push based" in description):
            self.error = RuntimeError(f"JetStream consumer unusable: {status} {description}")
            self.arrived.set()
        else:
            log.warning("JetStream pull request refused: %s %s", status, description)

    async def pump(self) -> None:
        """Keep a pull request outstanding while there is room; runs until cancelled."""
        expires_ns = int(self.expires * 1e9)
        least = max(1, self.batch // 2)
        while True:
            self.room.clear()
            now = time.monotonic()
            if self.current is not None and self.current.deadline < now:
                self.current = None  # never ended by the server: lost
            room = self.limit - len(self.buffer)
            if self.current is None and room >= least:
                self._n += 1
                size = min(room, self.batch)
                self.current = _Request(f"{self.inbox}.{self._n}", size, now + self.expires + 1)
                body = orjson.dumps({"batch": size, "expires": expires_ns})
                await self.nc.publish(self.next_subject, body, reply=self.current.reply)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.room.wait(), timeout=self.expires / 2)

    def take(self, most: int, most_bytes: int) -> list[Msg]:
        """Up to ``most`` buffered messages, fewer once they hold ``most_bytes``."""
        msgs: list[Msg] = []
        size = 0
        while self.buffer and len(msgs) < most and size < most_bytes:
            msg = self.buffer.popleft()
            msgs.append(msg)
            size += len(msg.data)
        self.room.set()
        return msgs


async def _ensure_consumer(js: Any, options: NatsOptions) -> None:
    """Create the durable consumer, or bring ack_wait / max_ack_pending up to date."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import APIError, NotFoundError

    config = ConsumerConfig(
        name=options.durable,
        durable_name=options.durable,
        filter_subject=options.subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=options.ack_wait,
        max_ack_pending=options.ack_pending_limit,
    )
    try:
        info = await js.consumer_info(options.stream, options.durable)
    except NotFoundError:
        await js.add_consumer(options.stream, config)
        return
    have = info.config
    if have.ack_policy != AckPolicy.EXPLICIT:
        raise RuntimeError(
            f"consumer {options.durable!r} acknowledges with {have.ack_policy}; tollguard needs "
            "explicit acks (delete the consumer, it is recreated)"
        )
    if (
        abs((have.ack_wait or 0) - options.ack_wait) > 1e-3
        or (have.max_ack_pending or 0) < options.ack_pending_limit
    ):
        try:
            await js.add_consumer(
                options.stream,
                config.evolve(
                    filter_subject=have.filter_subject, deliver_policy=have.deliver_policy
                ),
            )
        except APIError as exc:
            log.warning("could not update consumer %s: %s", options.durable, exc)


async def consume(
    ingestor: Ingestor,
    options: NatsOptions,
    *,
    once: bool = False,
    stop: asyncio.Event | None = None,
) -> NatsStats:
    """Run the consumer until ``stop`` (or, with ``once``, until nothing is pending)."""
    import nats
    from nats.js.api import DEFAULT_PREFIX
    from nats.js.errors import NotFoundError

    stop = stop or asyncio.Event()
    stats = NatsStats(IngestResult(source=f"nats:{options.stream}"))
    parser = NatsBatchParser(ingestor, options)
    # ack subjects come from the server: skip the per-publish subject regex
    nc = await nats.connect(
        options.servers, max_reconnect_attempts=-1, skip_subject_validation=True
    )
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(options.stream)
        except NotFoundError:
            if not options.create_stream:
                raise
            await js.add_stream(name=options.stream, subjects=[options.subject])
        await _ensure_consumer(js, options)
        inbox = nc.new_inbox()
        next_subject = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{options.stream}.{options.durable}"
        puller = _Puller(nc, next_subject, inbox, options)
        sub = await nc.subscribe(
            f"{inbox}.*",
            cb=puller.on_msg,
            pending_msgs_limit=puller.limit + options.batch,
            pending_bytes_limit=-1,
        )

        def store(msgs: list[Msg]) -> IngestResult:
            bodies = [(stream_sequence(m), m.data) for m in msgs]
            records, quarantine = parser.parse(bodies)
            return ingestor.commit(parser.source, records, quarantine)

        async def write(msgs: list[Msg]) -> None:
            result = await asyncio.to_thread(store, msgs)
            for m in msgs:  # only now: the records are committed
                await nc.publish(m.reply)
            await nc.flush()
            stats.result.add(result)
            stats.messages += len(msgs)
            stats.batches += 1

        async def nothing_pending() -> bool:
            info = await js.consumer_info(options.stream, options.durable)
            return not puller.buffer and info.num_pending == 0 and info.num_ack_pending == 0

        pump = asyncio.create_task(puller.pump())
        try:
            while not stop.is_set():
                if puller.error is not None:
                    raise puller.error
                if pump.done():
                    pump.result()  # raises what stopped it
                if puller.buffer:
                    await write(puller.take(options.batch, options.batch_bytes))
                    continue
                quiet = time.monotonic() - puller.last_arrival
                if once and quiet >= options.idle_check and await nothing_pending():
                    break
                puller.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(puller.arrived.wait(), timeout=options.idle_check)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        # clean stop: what was delivered to us is committed and acknowledged
        try:
            drained = sub.drain()  # type: ignore[no-untyped-call]
            await asyncio.wait_for(drained, timeout=5)
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("inbox drain: %s", exc)
        while puller.buffer:
            await write(puller.take(options.batch, options.batch_bytes))
        await nc.flush()
    finally:
        await nc.close()
    return stats


async def publish_lines(
    servers: str,
    subject: str,
    bodies: Sequence[bytes],
    stream: str | None = None,
    stream_subjects: Sequence[str] | None = None,
) -> None:
    """Publish message bodies (tests, benchmarks, small bridges); waits until stored."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(servers)
    try:
        js = nc.jetstream()
        if stream is not None:
            try:
                await js.stream_info(stream)
            except NotFoundError:
                await js.add_stream(name=stream, subjects=list(stream_subjects or [subject]))
            before = (await js.stream_info(stream)).state.messages
        for body in bodies:
            await nc.publish(subject, body)
        await nc.flush()
        if stream is not None:
            want = before + len(bodies)
            for _ in range(600):
                info = await js.stream_info(stream)
                if info.state.messages >= want:
                    break
                await asyncio.sleep(0.05)
    finally:
        await nc.drain()
