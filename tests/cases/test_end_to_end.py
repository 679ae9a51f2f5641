"""Simulator -> scan with detection -> alerts -> cases (CLI), with real loopback servers:
the timeline matches the ground truth, the webhook signature verifies, the mail arrives,
the evidence totals reconcile with the rated records, and a changed byte breaks the audit
log."""

from __future__ import annotations

import csv
import json
import zipfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson
import polars as pl
import pytest
import typer
from sqlalchemy import text
from typer.testing import CliRunner

from tollguard.cases.db import open_engine
from tollguard.cases.records import load_rated_file
from tollguard.cdr.model import cost_from_e4
from tollguard.commands import register_all
from tollguard.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tollguard.policy import load_policy
from tollguard.scan import ScanOptions, run_scan
from tollguard.sim.core import simulate

from ..notify.conftest import Receiver, SmtpServer, receiver, smtp_server  # noqa: F401

SECRET = "e2e-secret"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sim")
    sim = simulate(out, ["pbx-hack", "prs-pumping"], days=10, seed=7, accounts=4, scale=0.05)
    policy = load_policy(sim.files["policy"])
    rated = out / "rated.parquet"
    result = run_scan([sim.files["cdr"]], policy, ScanOptions(detect=True, out=rated))
    alerts = out / "alerts.jsonl"
    alerts.write_bytes(b"".join(orjson.dumps(a.to_dict()) + b"\n" for a in result.alerts))
    return {"dir": out, "rated": rated, "alerts": alerts, "policy": sim.files["policy"],
            "truth": sim.files["truth"]}  # fmt: skip


def cli() -> typer.Typer:
    app = typer.Typer()
    register_all(app)
    return app


def run(*args: str) -> str:
    result = CliRunner().invoke(cli(), list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_simulated_fraud_to_cases_notifications_evidence_and_audit(
    dataset: dict[str, Path], tmp_path: Path, receiver: Receiver, smtp_server: SmtpServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    truth = json.loads(dataset["truth"].read_text())
    pbx = next(s for s in truth["scenarios"] if s["scenario"] == "pbx-hack")
    account = pbx["account"]
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        dataset["policy"].read_text().replace('rates = "rates.csv"',
                                              f'rates = "{dataset["dir"] / "rates.csv"}"')
        + f"""
[[defaults.operators]]
name = "NOC"
webhook = "{receiver.url}"
min_severity = "critical"

[[accounts.{account}.contacts]]
name = "customer IT"
email = "it@{account}.example"
min_severity = "critical"

[accounts.{account}.escalation]
after_minutes = 30
""",
        encoding="utf-8",
    )  # fmt: skip
    monkeypatch.setenv("TOLLGUARD_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TOLLGUARD_SMTP_URL", f"smtp://{smtp_server.host}:{smtp_server.port}"
                       "?from=alerts@operator.example")  # fmt: skip
    db = f"sqlite:///{tmp_path / 'tg.db'}"

    imported = json.loads(run("cases", "import", str(dataset["alerts"]), "--db", db,
                              "--policy", str(policy_file), "--json"))  # fmt: skip
    assert imported["alerts"] > 0
    again = json.loads(run("cases", "import", str(dataset["alerts"]), "--db", db, "--json"))
    assert set(again["outcomes"]) == {"duplicate"}  # idempotent

    cases = json.loads(run("cases", "list", "--db", db, "--account", account, "--json"))
    hack = next(c for c in cases if c["severity"] == "critical")
    # timeline: onset is the scenario's first fraudulent call (ground truth)
    onset = datetime.fromisoformat(pbx["onset"])
    assert datetime.fromisoformat(hack["first_record_at"]) == onset
    first_alert = datetime.fromisoformat(hack["first_alert_at"])
    assert onset <= first_alert
    assert hack["first_notified_at"] is not None
    assert hack["timers"]["first_alert"]["text"].startswith("alerted ")

    # webhook to the operator: signature verifies with the shared secret
    assert receiver.requests
    for req in receiver.requests:
        verify_signature(SECRET, req.body, req.headers[TIMESTAMP_HEADER],
                         req.headers[SIGNATURE_HEADER], now=int(req.headers[TIMESTAMP_HEADER]))  # fmt: skip
    events = [json.loads(r.body)["event"] for r in receiver.requests]
    # the operator (critical only) hears when the case opens critical or is raised to it
    assert {"case.opened", "case.severity_raised"} & set(events), events
    # mail to the customer through the local SMTP server, escalated when not acknowledged
    rcpts = [m.rcpt_tos for m in smtp_server.collector.messages]
    assert [f"it@{account}.example"] in rcpts

    # workflow
    run("cases", "ack", hack["id"], "--db", db, "--actor", "ana", "--now",
        hack["first_alert_at"])  # fmt: skip
    run("cases", "action", hack["id"], "block", "--db", db, "--actor", "ana", "--note", "trunk")
    shown = json.loads(run("cases", "show", hack["id"], "--db", db, "--json"))
    assert shown["blocked_at"] is not None and shown["acknowledged_at"] == hack["first_alert_at"]

    # evidence pack: totals reconcile with the rated records, exactly
    out_dir = tmp_path / "evidence"
    res = json.loads(run("cases", "export", hack["id"], "--db", db, "--records",
                         str(dataset["rated"]), "--policy", str(policy_file), "--out",
                         str(out_dir), "--zip", "--json"))  # fmt: skip
    with (out_dir / "records.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == res["records"] > 0
    per_record = sum((Decimal(r["cost"]) for r in rows if r["cost"]), Decimal(0))
    [total] = res["totals"]
    assert Decimal(total["cost"]) == per_record
    rated = load_rated_file(dataset["rated"])
    ids = [r["record_id"] for r in rows]
    independent = cost_from_e4(int(rated.filter(pl.col("record_id").is_in(ids))["cost_e4"].sum()))
    assert independent == per_record
    assert all(r["deck"] and r["deck_row"] and r["billing"] for r in rows if r["cost"])
    assert (out_dir / "case.pdf").read_bytes().startswith(b"%PDF-1.4")
    assert total["cost"] in (out_dir / "case.html").read_text()
    with zipfile.ZipFile(out_dir.with_suffix(".zip")) as zf:
        assert f"{hack['id']}/SHA256SUMS" in zf.namelist()

    # audit: valid, then one changed byte is found and named
    assert "OK" in run("audit", "verify", "--db", db)
    exported = tmp_path / "audit.jsonl"
    run("audit", "export", "--db", db, "--out", str(exported))
    data = bytearray(exported.read_bytes())
    lines = data.split(b"\n")
    target = lines[4]
    pos = target.index(b'"actor":"') + len(b'"actor":"')
    target[pos] = ord("X") if target[pos] != ord("X") else ord("Y")
    lines[4] = target
    exported.write_bytes(b"\n".join(lines))
    bad = CliRunner().invoke(cli(), ["audit", "verify", "--file", str(exported)])
    assert bad.exit_code == 1
    assert "entry 5" in bad.output
    engine = open_engine(db)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET data = replace(data, '\"', '''\"''') "
                          "WHERE seq = 3"))  # fmt: skip
        conn.execute(text("UPDATE audit_log SET actor = actor || 'x' WHERE seq = 2"))
    engine.dispose()
    broken = CliRunner().invoke(cli(), ["audit", "verify", "--db", db])
    assert broken.exit_code == 1
    assert "entry 2" in broken.output
