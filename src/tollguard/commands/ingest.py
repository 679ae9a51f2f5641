"""`tollguard ingest`: follow a CDR file or a NATS JetStream stream into the store."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from tollguard.clikit import fail, load_policy_with_overrides

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)


def ingest(
    watch: Annotated[
        Path | None,
        typer.Option(help="CDR file to follow (e.g. /var/log/asterisk/cdr-csv/Master.csv)."),
    ] = None,
    nats_url: Annotated[
        str | None, typer.Option("--nats", help="NATS server, e.g. nats://127.0.0.1:4222.")
    ] = None,
    stream: Annotated[str, typer.Option(help="JetStream stream (created if missing).")] = "CDRS",
    subject: Annotated[str, typer.Option(help="Subject filter of the consumer.")] = "cdrs.>",
    durable: Annotated[str, typer.Option(help="Durable consumer name.")] = "tollguard",
    ack_wait: Annotated[
        float, typer.Option(help="Seconds before an unacknowledged message is redelivered.")
    ] = 30.0,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Input layout, or 'auto'.")] = "auto",
    policy: Annotated[Path | None, typer.Option(help="Policy TOML (context, decks).")] = None,
    rates: Annotated[
        str | None, typer.Option(help="Rate deck CSV (overrides the policy's).")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="Database URL; default $TOLLGUARD_DATABASE_URL or ./tollguard.db."
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Process what is there now, then exit (cron, tests).")
    ] = False,
    batch: Annotated[
        int | None,
        typer.Option(
            help="Lines (file, default 5000) or messages (NATS, default and most 10000) "
            "per transaction."
        ),
    ] = None,
    poll: Annotated[float, typer.Option(help="Seconds between looks at an idle file.")] = 0.5,
    utc: Annotated[bool, typer.Option("--utc", help="CDR times are UTC, not local.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the totals as JSON.")] = False,
    detect: Annotated[
        bool | None,
        typer.Option(
            "--detect/--no-detect",
            help="Run new records through the detection engine and file alerts into cases "
            "(default: on when --policy is given).",
        ),
    ] = None,
    alerts_out: Annotated[
        Path | None, typer.Option(help="Also append the alerts to this JSON Lines file.")
    ] = None,
    warmup_days: Annotated[
        float,
        typer.Option(
            help="With detection: replay the stored records of the last N days through the "
            "engine at startup (0: start empty)."
        ),
    ] = 7.0,
) -> None:
    """Store every record exactly once, durably; resume where it stopped after a crash."""
    if (watch is None) == (nats_url is None):
        fail("give exactly one source: --watch FILE or --nats URL", "tollguard ingest --help")
    if batch is not None and batch < 1:
        fail("--batch must be at least 1")
    if warmup_days < 0:
        fail("--warmup-days must be 0 or more")
    detect = policy is not None if detect is None else detect
    if alerts_out is not None and not detect:
        fail("--alerts-out needs detection (--detect)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    pol = load_policy_with_overrides(policy)

    from sqlalchemy.exc import SQLAlchemyError

    from tollguard.ingest.core import Ingestor
    from tollguard.ingest.live import LiveDetection
    from tollguard.store.engine import make_engine
    from tollguard.store.migrate import ensure_schema, upgrade

    engine = make_engine(db)
    live: LiveDetection | None = None
    try:
        ensure_schema(engine)
        if detect:
            upgrade(engine)  # the cases tables (0002_cases) live in the same database
            live = LiveDetection(engine, pol, alerts_out=alerts_out)
            live.warm_up(warmup_days)
        ingestor = Ingestor(engine, pol, rates=rates, fmt=fmt, assume_utc=utc, on_new=live)
    except SQLAlchemyError as exc:
        fail(f"database: {exc}", "is the database reachable? run `tollguard db upgrade`")
    except (ValueError, OSError, RuntimeError) as exc:
        fail(str(exc))
    try:
        if watch is not None:
            summary = _follow(ingestor, watch, fmt, batch or 5000, poll, once)
        else:
            assert nats_url is not None
            summary = _consume(
                ingestor, nats_url, stream, subject, durable, fmt, batch or 10_000, ack_wait, once
            )
    except (ValueError, OSError) as exc:
        fail(str(exc))
    finally:
        if live is not None:
            live.close()
        engine.dispose()
    if live is not None:
        summary["detection"] = live.stats.to_dict()
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(summary) + b"\n")
    else:
        console.print(
            f"{summary['inserted']:,} records stored, {summary['duplicates']:,} duplicates, "
            f"{summary['rejected']:,} lines quarantined"
        )
        if live is not None:
            st = live.stats
            console.print(
                f"detection: {st.records:,} new records, {st.alerts:,} alerts, "
                f"{st.cases_opened:,} cases opened ({st.warmup_records:,} replayed at start)"
            )


def _stop_on_signals(callback: object) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: callback())  # type: ignore[operator]


def _follow(
    ingestor: object, path: Path, fmt: str, batch: int, poll: float, once: bool
) -> dict[str, object]:
    from tollguard.ingest.core import Ingestor
    from tollguard.ingest.tail import FileFollower

    assert isinstance(ingestor, Ingestor)
    if once and not path.exists():
        fail(f"no such file: {path}")
    stop = threading.Event()
    _stop_on_signals(stop.set)
    follower = FileFollower(ingestor, path, fmt=fmt, batch_lines=batch, poll_interval=poll)
    stats = follower.run(once=once, stop=stop)
    for warning in stats.warnings:
        console.print(f"[yellow]{warning}[/yellow]")
    return {**stats.result.to_dict(), "batches": stats.batches, "rotations": stats.rotations}


def _consume(
    ingestor: object,
    url: str,
    stream: str,
    subject: str,
    durable: str,
    fmt: str,
    batch: int,
    ack_wait: float,
    once: bool,
) -> dict[str, object]:
    from tollguard.ingest.core import Ingestor
    from tollguard.ingest.nats_source import NatsOptions, consume

    assert isinstance(ingestor, Ingestor)
    options = NatsOptions(
        servers=url, stream=stream, subject=subject, durable=durable, fmt=fmt,
        batch=min(batch, 10_000), ack_wait=ack_wait,
    )  # fmt: skip

    async def main() -> dict[str, object]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        stats = await consume(ingestor, options, once=once, stop=stop)
        return {**stats.result.to_dict(), "messages": stats.messages, "batches": stats.batches}

    return asyncio.run(main())
