"""Sustained ingest rate (records/s) from a file and from NATS into SQLite and PostgreSQL,
as a ratio against the plain ``run_scan`` of the same file in the same run, and NATS
against the file on the same database; ``file+detect`` is the file with live detection
(every new record through the engine, alerts into cases: ``ingest --detect``).

    python -m bench.bench_ingest [rows]

Needs PostgreSQL on 127.0.0.1:5432 (database ``test``) and NATS JetStream on :4222.
Prints figures; asserts only that every record was stored.

Last run (100,000 one-line messages, shared 2-core machine; docs/ingest.md has more):

    run_scan baseline: 171,976 rec/s (0.58 s)
           file -> sqlite    :    28,196 rec/s (3.55 s), 0.16x scan rate
           nats -> sqlite    :    15,309 rec/s (6.53 s), 0.09x scan rate, 1.84x the file's time
    file+detect -> sqlite    :     2,987 rec/s (33.47 s), 0.02x scan rate, 9.44x the file's time
           file -> postgresql:    23,861 rec/s (4.19 s), 0.14x scan rate
           nats -> postgresql:    10,689 rec/s (9.36 s), 0.06x scan rate, 2.23x the file's time
    file+detect -> postgresql:     1,870 rec/s (53.48 s), 0.01x scan rate, 12.76x the file's time

The generated traffic is random (about one alert per 90 records, each filed into a case
in its own transaction), so ``file+detect`` is a pessimistic figure: per record the
engine takes about 130 us and each alert about 10 ms of case filing.

Before the pull-ahead consumer the NATS lines read ~2,200 records/s (about 10x the
file's time): every fetch waited out its 1 s timeout.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.cdrgen import write_asterisk, write_deck
from tollguard.ingest.core import Ingestor
from tollguard.ingest.live import LiveDetection
from tollguard.ingest.nats_source import NatsOptions, consume, publish_lines
from tollguard.ingest.tail import FileFollower
from tollguard.policy import default_policy
from tollguard.scan import ScanOptions, run_scan
from tollguard.store.engine import make_engine
from tollguard.store.migrate import upgrade
from tollguard.store.testing import ensure_nats, temp_database


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        path, deck = write_asterisk(d / "Master.csv", rows), write_deck(d / "deck.csv")
        policy = default_policy()
        t = time.perf_counter()
        run_scan([path], policy, ScanOptions(rates=str(deck), detect=False))
        scan_s = time.perf_counter() - t
        print(f"run_scan baseline: {rows / scan_s:,.0f} records/s ({scan_s:.2f} s)")
        servers = ensure_nats()
        bodies = [ln.encode() for ln in path.read_text().splitlines()]
        for kind in ("sqlite", "postgresql"):
            file_s = 0.0
            for source in ("file", "nats", "file+detect"):
                with temp_database(kind, d) as url:
                    upgrade(url)
                    engine = make_engine(url)
                    live = LiveDetection(engine, policy) if source == "file+detect" else None
                    ingestor = Ingestor(engine, policy, rates=str(deck), on_new=live)
                    if source != "nats":
                        t = time.perf_counter()
                        FileFollower(ingestor, path, batch_lines=20_000).run(once=True)
                        took = time.perf_counter() - t
                        file_s = file_s or took
                    else:
                        name = f"TGBENCH_{uuid.uuid4().hex[:8].upper()}"
                        asyncio.run(
                            publish_lines(
                                servers, f"{name.lower()}.c", bodies, name, [f"{name.lower()}.>"]
                            )
                        )
                        opts = NatsOptions(
                            servers=servers,
                            stream=name,
                            subject=f"{name.lower()}.>",
                            durable="b",
                            fmt="asterisk-csv",
                        )  # the CLI's defaults: 10,000 messages per transaction
                        t = time.perf_counter()
                        stats = asyncio.run(consume(ingestor, opts, once=True))
                        took = time.perf_counter() - t
                        asyncio.run(_delete_stream(servers, name))
                        assert stats.result.inserted == rows, stats.result.to_dict()
                    engine.dispose()
                    vs_file = "" if source == "file" else f", {took / file_s:.2f}x the file's time"
                    print(
                        f"{source:>11} -> {kind:<10}: {rows / took:>9,.0f} rec/s "
                        f"({took:.2f} s), "
                        f"{scan_s / took:.2f}x scan rate{vs_file}"
                    )


async def _delete_stream(servers: str, name: str) -> None:
    import nats

    nc = await nats.connect(servers)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


if __name__ == "__main__":
    main()
