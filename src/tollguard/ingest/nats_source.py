"""Consume CDRs from a NATS JetStream durable pull consumer.

A message body is one CDR line, several lines (JSON Lines or CSV lines), or a JSON list
of record objects. Messages are fetched in batches; a batch is priced and committed in
one transaction, and only then is every message of it acknowledged (explicit ack). A
crash before the ack makes JetStream redeliver after ``ack_wait``; the records are
already stored under their stable ids, so the redelivery counts as duplicates.

Backpressure: at most ``queue_batches`` fetched batches wait for the database (a bounded
``asyncio.Queue``), and ``max_ack_pending`` bounds what the server hands out, so a slow
database slows consumption instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from tollguard.cdr._lines import decode
from tollguard.cdr.detect import CdrFormatError
from tollguard.cdr.model import RECORD_SCHEMA
from tollguard.ingest.core import Ingestor, IngestResult
from tollguard.ingest.lines import LineParser
from tollguard.store.records import QuarantineEntry

log = logging.getLogger(__name__)


@dataclass
class NatsOptions:
    servers: str = "nats://127.0.0.1:4222"
    stream: str = "CDRS"
    subject: str = "cdrs.>"
    durable: str = "tollguard"
    fmt: str = "auto"
    batch: int = 1000  # messages per fetch and per transaction
    fetch_timeout: float = 1.0
    ack_wait: float = 30.0
    max_ack_pending: int = 20_000
    queue_batches: int = 2
    create_stream: bool = True


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
            frame = pl.DataFrame(
                {
                    "_line": pl.Series(range(1, len(rows) + 1), dtype=pl.Int64),
                    "_raw": [r[2] for r in rows],
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


async def consume(
    ingestor: Ingestor,
    options: NatsOptions,
    *,
    once: bool = False,
    stop: asyncio.Event | None = None,
) -> NatsStats:
    """Run the consumer until ``stop`` (or, with ``once``, until nothing is pending)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    stop = stop or asyncio.Event()
    stats = NatsStats(IngestResult(source=f"nats:{options.stream}"))
    parser = NatsBatchParser(ingestor, options)
    nc = await nats.connect(options.servers, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(options.stream)
        except NotFoundError:
            if not options.create_stream:
                raise
            await js.add_stream(name=options.stream, subjects=[options.subject])
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=options.ack_wait,
            max_ack_pending=options.max_ack_pending,
        )
        psub = await js.pull_subscribe(
            options.subject, durable=options.durable, stream=options.stream, config=config
        )
        queue: asyncio.Queue[list[Any] | None] = asyncio.Queue(maxsize=options.queue_batches)
        busy = asyncio.Event()  # set while the writer holds an unacked batch

        async def fetcher() -> None:
            while not stop.is_set():
                try:
                    msgs = await psub.fetch(options.batch, timeout=options.fetch_timeout)
                except TimeoutError:
                    msgs = []
                except nats.errors.TimeoutError:
                    msgs = []
                if msgs:
                    await queue.put(msgs)
                    continue
                if once and queue.empty() and not busy.is_set():
                    info = await psub.consumer_info()
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        break
            await queue.put(None)

        async def writer() -> None:
            while True:
                msgs = await queue.get()
                if msgs is None:
                    return
                busy.set()
                try:
                    bodies = [(m.metadata.sequence.stream, m.data) for m in msgs]
                    records, quarantine = await asyncio.to_thread(parser.parse, bodies)
                    result = await asyncio.to_thread(
                        ingestor.commit, parser.source, records, quarantine
                    )
                    for m in msgs:  # only now: the records are committed
                        await m.ack()
                    await nc.flush()
                    stats.result.add(result)
                    stats.messages += len(msgs)
                    stats.batches += 1
                finally:
                    busy.clear()

        fetch_task = asyncio.create_task(fetcher())
        write_task = asyncio.create_task(writer())
        done, _ = await asyncio.wait({fetch_task, write_task}, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                fetch_task.cancel()
                write_task.cancel()
                raise task.exception()  # type: ignore[misc]
        await asyncio.gather(fetch_task, write_task)
    finally:
        await nc.drain()
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
