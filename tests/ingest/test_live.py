"""Live detection on ingest: new records feed the engine once, alerts land in cases once.

Traffic is a small simulated week with a PBX hack (deterministic per seed); the expected
alerts come from an independent path, ``run_scan`` with detection over the same file.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import polars as pl
from sqlalchemy import Engine, func, select

from bench.cdrgen import write_asterisk
from tollguard.cdr.records import records_from_frame
from tollguard.detect.engine import Engine as DetectionEngine
from tollguard.ingest.core import Ingestor
from tollguard.ingest.live import LiveDetection
from tollguard.ingest.nats_source import NatsOptions, consume, publish_lines
from tollguard.ingest.tail import FileFollower
from tollguard.policy import Policy
from tollguard.sim.core import SimulationResult
from tollguard.store.cases_schema import alerts as alerts_t
from tollguard.store.cases_schema import cases as cases_t
from tollguard.store.testing import ensure_nats


def read_alerts(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def case_rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        n_alerts = conn.execute(select(func.count()).select_from(alerts_t)).scalar_one()
        n_cases = conn.execute(select(func.count()).select_from(cases_t)).scalar_one()
    return int(n_alerts), int(n_cases)


def test_watch_files_alerts_once_and_a_resend_changes_nothing(
    engine: Engine,
    sim: SimulationResult,
    policy: Policy,
    scan_alert_ids: set[str],
    tmp_path: Path,
) -> None:
    out = tmp_path / "alerts.jsonl"
    with LiveDetection(engine, policy, alerts_out=out) as live:
        follower = FileFollower(Ingestor(engine, policy, on_new=live), sim.files["cdr"])
        first = follower.run(once=True)
    assert first.result.inserted == sim.calls
    assert live.stats.records == sim.calls
    written = read_alerts(out)
    assert {a["id"] for a in written} == scan_alert_ids
    filed = case_rows(engine)
    assert filed[0] == len(scan_alert_ids) and filed[1] >= 1
    assert live.stats.cases_opened == filed[1]

    # the same records again, from another file (a switch re-sending its log)
    copy = tmp_path / "resent.csv"
    shutil.copy(sim.files["cdr"], copy)
    with LiveDetection(engine, policy, alerts_out=out) as again:
        stats = FileFollower(Ingestor(engine, policy, on_new=again), copy).run(once=True)
    assert (stats.result.inserted, stats.result.duplicates) == (0, sim.calls)
    assert again.stats.records == 0 and again.stats.alerts == 0
    assert read_alerts(out) == written
    assert case_rows(engine) == filed


def test_nats_redelivered_and_resent_messages_feed_detection_once(
    engine: Engine,
    sim: SimulationResult,
    policy: Policy,
    scan_alert_ids: set[str],
) -> None:
    servers = ensure_nats()
    name = f"TGLIVE_{uuid.uuid4().hex[:10].upper()}"
    subject = f"{name.lower()}.pbx"
    bodies = [line.encode() for line in sim.files["cdr"].read_text().splitlines()]
    options = NatsOptions(
        servers=servers, stream=name, subject=f"{name.lower()}.>", durable="live",
        fmt="asterisk-csv", batch=1000,
    )  # fmt: skip
    live = LiveDetection(engine, policy)
    ingestor = Ingestor(engine, policy, on_new=live)
    try:
        asyncio.run(publish_lines(servers, subject, bodies, name, [f"{name.lower()}.>"]))
        first = asyncio.run(asyncio.wait_for(consume(ingestor, options, once=True), 120))
        assert (first.messages, first.result.inserted) == (len(bodies), sim.calls)
        assert live.stats.records == sim.calls
        filed = case_rows(engine)
        assert filed[0] == len(scan_alert_ids)

        asyncio.run(publish_lines(servers, subject, bodies, name))  # the switch sends again
        again = asyncio.run(asyncio.wait_for(consume(ingestor, options, once=True), 120))
        assert (again.result.inserted, again.result.duplicates) == (0, sim.calls)
        assert live.stats.records == sim.calls
        assert case_rows(engine) == filed
    finally:
        asyncio.run(_delete_stream(servers, name))


def test_nats_stop_commits_and_acks_what_was_delivered(
    engine: Engine, policy: Policy, tmp_path: Path
) -> None:
    """Without --once: stop after the first commit; everything delivered is stored and
    acknowledged, so a second run finds nothing to redeliver."""
    servers = ensure_nats()
    name = f"TGSTOP_{uuid.uuid4().hex[:10].upper()}"
    bodies = [
        ln.encode() for ln in write_asterisk(tmp_path / "m.csv", 600).read_text().splitlines()
    ]
    options = NatsOptions(
        servers=servers, stream=name, subject=f"{name.lower()}.>", durable="stop",
        fmt="asterisk-csv", batch=100,
    )  # fmt: skip

    async def run_until_first_commit() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def first_commit(_: pl.DataFrame) -> None:
            loop.call_soon_threadsafe(stop.set)

        ingestor = Ingestor(engine, policy, on_new=first_commit)
        stats = await asyncio.wait_for(consume(ingestor, options, stop=stop), 60)
        return stats.result.inserted

    try:
        asyncio.run(
            publish_lines(servers, f"{name.lower()}.a", bodies, name, [f"{name.lower()}.>"])
        )
        first = asyncio.run(run_until_first_commit())
        assert 100 <= first <= 600
        rest = asyncio.run(
            asyncio.wait_for(consume(Ingestor(engine, policy), options, once=True), 60)
        )
        assert rest.result.duplicates == 0  # nothing delivered before the stop comes back
        assert first + rest.result.inserted == 600
    finally:
        asyncio.run(_delete_stream(servers, name))


def test_warm_up_continues_where_the_last_process_stopped(
    engine: Engine, sim: SimulationResult, policy: Policy, tmp_path: Path
) -> None:
    """A restarted process that replays the stored days raises exactly the alerts one
    uninterrupted engine would have raised for the records that follow."""
    lines = sim.files["cdr"].read_text().splitlines()
    cut = len(lines) * 2 // 3
    before: list[pl.DataFrame] = []
    Ingestor(engine, policy, on_new=before.append).ingest_lines("pbx", lines[:cut], "asterisk-csv")

    out = tmp_path / "alerts.jsonl"
    after: list[pl.DataFrame] = []
    with LiveDetection(engine, policy, alerts_out=out) as warm:
        assert warm.warm_up(30) == cut

        def hook(frame: pl.DataFrame) -> None:
            after.append(frame)
            warm(frame)

        Ingestor(engine, policy, on_new=hook).ingest_lines("pbx", lines[cut:], "asterisk-csv")

    reference = DetectionEngine(policy)
    for record in records_from_frame(pl.concat(before)):
        reference.process(record)
    expected = [a.id for r in records_from_frame(pl.concat(after)) for a in reference.process(r)]
    assert expected, "the split must leave alerts for the second part"
    assert [a["id"] for a in read_alerts(out)] == expected
    cold = DetectionEngine(policy)  # what a restart without the replay would have said
    assert [a.id for r in records_from_frame(pl.concat(after)) for a in cold.process(r)] != expected


def test_cli_ingest_with_policy_detects_and_warms_up(
    db_url: str, sim: SimulationResult, scan_alert_ids: set[str], tmp_path: Path
) -> None:
    out = tmp_path / "alerts.jsonl"
    args = [
        sys.executable, "-m", "tollguard.ingest", "--watch", str(sim.files["cdr"]),
        "--policy", str(sim.files["policy"]), "--db", db_url, "--once", "--json",
        "--alerts-out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.run(args, capture_output=True, env=env, timeout=180, check=False)
    assert first.returncode == 0, first.stderr.decode()[-3000:]
    summary = orjson.loads(first.stdout)
    assert summary["inserted"] == sim.calls
    assert summary["detection"]["records"] == sim.calls
    assert {a["id"] for a in read_alerts(out)} == scan_alert_ids

    again = subprocess.run(args, capture_output=True, env=env, timeout=180, check=False)
    assert again.returncode == 0, again.stderr.decode()[-3000:]
    summary = orjson.loads(again.stdout)
    assert summary["inserted"] == 0
    assert summary["detection"] == {
        "records": 0, "alerts": 0, "cases_opened": 0, "warmup_records": sim.calls,
    }  # fmt: skip
    assert {a["id"] for a in read_alerts(out)} == scan_alert_ids


async def _delete_stream(servers: str, name: str) -> None:
    import nats

    nc = await nats.connect(servers)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()
