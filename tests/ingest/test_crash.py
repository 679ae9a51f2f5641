"""SIGKILL in the middle of 100,000 records, restart: exact totals, nothing lost or twice.

Once from a watched file and once from NATS JetStream, each on SQLite and PostgreSQL.
The expected totals come from an independent path: ``Scanner.rated_batches`` over the
same file (no database), grouped here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, func, select

from bench.cdrgen import write_asterisk, write_deck
from tollguard.ingest.nats_source import publish_lines
from tollguard.policy import default_policy
from tollguard.scan import Scanner, ScanOptions, ScanResult
from tollguard.store.counters import daily_counters
from tollguard.store.schema import ingest_positions, rated_records
from tollguard.store.testing import ensure_nats

ROWS = 100_000
KILL_AFTER = 25_000  # stored records before the SIGKILL


def expected_totals(
    path: Path, deck: Path
) -> tuple[int, dict[str, int], dict[tuple[str, date], tuple[int, int]]]:
    scanner = Scanner(default_policy(), ScanOptions(rates=str(deck)))
    frames = list(scanner.rated_batches([path], ScanResult(currency="EUR")))
    frame = pl.concat(frames)
    per_account = frame.group_by("account").agg(pl.col("cost_e4").sum())
    daily = frame.group_by("account", pl.col("start").dt.date().alias("day")).agg(
        pl.len().alias("calls"), pl.col("cost_e4").sum().alias("cost")
    )
    return (
        frame.height,
        {a: int(c or 0) for a, c in per_account.iter_rows()},
        {(a, d): (int(n), int(c or 0)) for a, d, n, c in daily.iter_rows()},
    )


def stored_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(rated_records)).scalar_one())


def run_cli(args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tollguard.ingest", *args, "--once", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def kill_midway(proc: subprocess.Popen[bytes], engine: Engine, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(
                f"ingest ended before it could be killed: {proc.returncode}\n{err.decode()[-3000:]}"
            )
        n = stored_count(engine)
        if n >= KILL_AFTER:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return n
        time.sleep(0.02)
    proc.kill()
    pytest.fail("ingest did not reach the kill point in time")


def finish(proc: subprocess.Popen[bytes], timeout: float = 120) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("restarted ingest did not finish in time")
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode()


def assert_exact(engine: Engine, path: Path, deck: Path) -> None:
    records, costs, daily = expected_totals(path, deck)
    assert records == ROWS
    assert stored_count(engine) == records
    with engine.connect() as conn:
        got_costs = dict(
            conn.execute(
                select(rated_records.c.account, func.sum(rated_records.c.cost_e4)).group_by(
                    rated_records.c.account
                )
            ).all()
        )
    assert {a: int(c or 0) for a, c in got_costs.items()} == costs
    got_daily = {(c.account, c.day): (c.calls, c.cost_e4) for c in daily_counters(engine)}
    assert got_daily == daily


@pytest.fixture
def big_file(tmp_path: Path) -> tuple[Path, Path]:
    return write_asterisk(tmp_path / "Master.csv", ROWS), write_deck(tmp_path / "deck.csv")


def test_sigkill_while_following_a_file(
    engine: Engine, db_url: str, big_file: tuple[Path, Path]
) -> None:
    path, deck = big_file
    args = ["--watch", str(path), "--rates", str(deck), "--db", db_url, "--batch", "2000"]
    killed_at = kill_midway(run_cli(args), engine)
    assert KILL_AFTER <= killed_at < ROWS
    out = finish(run_cli(args))
    assert '"duplicates":0' in out  # the position was committed with the records
    assert_exact(engine, path, deck)
    with engine.connect() as conn:
        offset = conn.execute(select(ingest_positions.c.offset)).scalar_one()
    assert offset == path.stat().st_size


def test_sigkill_while_consuming_nats(
    engine: Engine, db_url: str, big_file: tuple[Path, Path]
) -> None:
    path, deck = big_file
    servers = ensure_nats()
    name = f"TGTEST_{uuid.uuid4().hex[:10].upper()}"
    subject = f"{name.lower()}.cdrs"
    bodies = [line.encode() for line in path.read_text().splitlines()]
    asyncio.run(
        publish_lines(servers, subject, bodies, stream=name, stream_subjects=[f"{name.lower()}.>"])
    )
    args = [
        "--nats", servers, "--stream", name, "--subject", f"{name.lower()}.>",
        "--durable", "tg", "--ack-wait", "3", "--batch", "2000",
        "--rates", str(deck), "--db", db_url, "--format", "asterisk-csv",
    ]  # fmt: skip
    try:
        killed_at = kill_midway(run_cli(args), engine)
        assert KILL_AFTER <= killed_at < ROWS
        finish(run_cli(args))
        assert_exact(engine, path, deck)
    finally:
        asyncio.run(_delete_stream(servers, name))


async def _delete_stream(servers: str, name: str) -> None:
    import nats

    nc = await nats.connect(servers)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.drain()
