"""`tollguard scan` end to end: real samples, exact totals, duplicates, bad lines, output."""

from __future__ import annotations

import gzip
import json
import shutil
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tollguard.cli import _register, app
from tollguard.policy import parse_policy
from tollguard.scan import ScanOptions, run_scan

RATES = """prefix,destination,rate_per_minute,connect_fee,billing
31,Netherlands,0.0100,0,60/60
316,Netherlands mobile,0.0650,0.0100,1/1
670,Timor-Leste,1.9500,0.1000,60/60
"""

# Asterisk 16-column Master.csv lines, local Amsterdam time.
LINES = [
    '"acme","0201234567","0612345678","out","""Reception"" <200>","SIP/200-1","SIP/trunk-2","Dial","SIP/trunk/0612345678","2026-03-02 10:00:00","2026-03-02 10:00:05","2026-03-02 10:01:10",70,65,"ANSWERED","DOCUMENTATION"',
    '"acme","0201234567","00670771234567","out","""Reception"" <200>","SIP/200-3","SIP/trunk-4","Dial","SIP/trunk","2026-03-02 10:05:00","2026-03-02 10:05:02","2026-03-02 10:07:02",122,120,"ANSWERED","DOCUMENTATION"',
    '"acme","0201234567","0201111111","out","""Reception"" <200>","SIP/200-5","","Dial","SIP/trunk","2026-03-02 10:09:00",,"2026-03-02 10:09:20",20,0,"NO ANSWER","DOCUMENTATION"',
    'this line is not a CDR',
    '"shop","0301234567","0031201234567","out","x","SIP/300-1","SIP/trunk-9","Dial","","2026-03-02 11:00:00","2026-03-02 11:00:01","2026-03-02 11:00:31",30,30,"ANSWERED","DOCUMENTATION"',
]  # fmt: skip


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "rates.csv").write_text(RATES)
    (tmp_path / "policy.toml").write_text(
        '[defaults]\ncountry = "NL"\ntimezone = "Europe/Amsterdam"\nrates = "rates.csv"\n'
    )
    (tmp_path / "Master.csv").write_text("\n".join(LINES) + "\n")
    return tmp_path


def _cli(*args: str) -> tuple[int, str]:
    _register()
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout


def test_json_summary_prices_exactly(workdir: Path) -> None:
    code, out = _cli(
        "scan", str(workdir / "Master.csv"), "--policy", str(workdir / "policy.toml"),
        "--json", "--no-detect",
    )  # fmt: skip
    assert code == 0, out
    data = json.loads(out)
    assert data["records"] == 4
    assert data["rejected"] == 1
    assert data["duplicates"] == 0
    assert data["unrated"] == 0
    assert data["currency"] == "EUR"
    acme = data["accounts"]["acme"]
    # mobile: 65 s at 1/1 * 0.065/min + 0.01 connect = 0.0804167 -> 0.0804 (half-up, 4 places)
    # Timor-Leste: 120 s at 60/60 * 1.95/min + 0.10 = 4.0000; unanswered call costs nothing
    assert acme == {**acme, "calls": 3, "answered": 2, "billable_seconds": 185, "cost": "4.0804"}
    assert data["accounts"]["shop"]["cost"] == "0.0100"  # 30 s rounds up to 60 s at 0.01/min
    assert data["cost"] == "4.0904"
    bad = data["rejected_lines"][0]
    assert bad["line"] == 4 and bad["source_file"].endswith("Master.csv") and bad["reason"]


def test_rated_output_reproduces_totals(workdir: Path) -> None:
    policy = parse_policy(
        {"defaults": {"country": "NL", "timezone": "Europe/Amsterdam", "rates": "rates.csv"}},
        base_dir=str(workdir),
    )
    out = workdir / "rated.parquet"
    result = run_scan([workdir / "Master.csv"], policy, ScanOptions(out=out))
    rated = pl.read_parquet(out)
    assert rated.height == result.records == 4
    assert sum(rated.get_column("cost").to_list(), Decimal(0)) == result.cost
    timor = rated.filter(pl.col("country") == "TL").row(0, named=True)
    # every priced call says which deck row priced it and how
    assert timor["prefix"] == "670" and timor["deck_row"] == 4 and timor["billing"] == "60/60"
    assert timor["charged_seconds"] == 120 and timor["cost"] == Decimal("4.0000")
    assert timor["callee_e164"] == "+670771234567"
    assert str(timor["start"]) == "2026-03-02 09:05:00+00:00"  # 10:05 CET is 09:05 UTC


def test_same_file_twice_counts_once_and_gzip_reads(workdir: Path) -> None:
    gz = workdir / "copy.csv.gz"
    with (workdir / "Master.csv").open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    code, out = _cli(
        "scan", str(workdir / "Master.csv"), str(gz), "--policy", str(workdir / "policy.toml"),
        "--json", "--no-detect",
    )  # fmt: skip
    assert code == 0, out
    data = json.loads(out)
    assert data["records"] == 4
    assert data["duplicates"] == 4
    assert data["rejected"] == 2  # the bad line, once per file
    assert data["cost"] == "4.0904"


def test_real_samples_all_read(tmp_path: Path) -> None:
    files = sorted(str(p) for p in SAMPLES.rglob("*.csv"))
    code, out = _cli("scan", *files, "--json", "--no-detect", "--timezone", "Europe/Moscow")
    assert code == 0, out
    data = json.loads(out)
    formats = {Path(f["path"]).name: f["format"] for f in data["files"]}
    assert formats["newcdrcolumns.csv"] == "asterisk-csv"
    assert formats["example-template-spreadsheet-dates.csv"].startswith("freeswitch")
    assert data["rejected"] == 0
    assert data["duplicates"] == 2  # the FreeSWITCH uuid written three times
    assert data["records"] == 7 + 7 + 5
    # calls to internal extensions are listed as unrated with a reason, never priced as zero
    assert data["unrated_reasons"].get("not_public", 0) >= 1


def test_clear_errors_for_missing_file_and_bad_policy(tmp_path: Path) -> None:
    code, _ = _cli("scan", str(tmp_path / "nope.csv"))
    assert code == 2
    bad = tmp_path / "p.toml"
    bad.write_text('[defaults]\ntimezone = "Mars/Base"\n')
    (tmp_path / "a.csv").write_text(LINES[0] + "\n")
    code, _ = _cli("scan", str(tmp_path / "a.csv"), "--policy", str(bad))
    assert code == 2


def test_human_summary_lists_accounts_and_rejects(workdir: Path) -> None:
    code, out = _cli(
        "scan", str(workdir / "Master.csv"), "--policy", str(workdir / "policy.toml"), "--no-detect"
    )
    assert code == 0
    assert "acme" in out and "4.0804" in out
    assert "Master.csv:4" in out  # rejected line with file and line number


def test_human_summary_lists_alerts_with_their_explanation(workdir: Path) -> None:
    code, out = _cli("scan", str(workdir / "Master.csv"), "--policy", str(workdir / "policy.toml"))
    assert code == 0
    assert "Alerts (1): 0 critical, 1 warning" in out
    line = next(x for x in out.splitlines() if x.startswith("WARNING"))
    assert "destination acme -> TL: 1 call, EUR 4.0000" in line  # 2 min at 1.95 + 0.10
    assert "detected 2026-03-02T09:07+00:00" in line  # UTC, with its offset
    assert "1 call to Timor-Leste (+670)" in out and "high-risk destination" in out


def test_column_mapping_from_the_command_line(workdir: Path) -> None:
    csv = workdir / "export.csv"
    csv.write_text(
        "Begin;Einde;Van;Naar;Klant;Status\n"
        "02/03/2026 10:00;02/03/2026 10:02;0201234567;0612345678;acme;ANSWERED\n"
    )
    code, out = _cli(
        "scan", str(csv), "--policy", str(workdir / "policy.toml"), "--json", "--no-detect",
        "--map", "start=Begin", "--map", "end=Einde", "--map", "caller=Van", "--map", "callee=Naar",
        "--map", "account=Klant", "--map", "disposition=Status", "--time-format", "%d/%m/%Y %H:%M",
    )  # fmt: skip
    assert code == 0, out
    data = json.loads(out)
    assert data["records"] == 1 and data["files"][0]["format"] == "csv-mapped"
    # 120 s to a Dutch mobile at 1/1: 0.065 * 2 + 0.01 connect
    assert data["accounts"]["acme"]["cost"] == "0.1400"
    code, _ = _cli("scan", str(csv), "--map", "start")
    assert code == 2  # a malformed mapping is a clear error


def test_detection_run_gives_the_same_totals_and_raises_a_late_read_error(workdir: Path) -> None:
    """With detection the next batch is prepared in a thread: totals must not change,
    and an error in a later file must reach the caller (not hang or vanish)."""
    policy = parse_policy(
        {"defaults": {"country": "NL", "timezone": "Europe/Amsterdam",
                      "rates": str(workdir / "rates.csv")}},
    )  # fmt: skip
    master = workdir / "Master.csv"
    plain = run_scan([master], policy, ScanOptions(detect=False, batch_rows=2))
    detected = run_scan([master], policy, ScanOptions(detect=True, batch_rows=2))
    assert (detected.records, detected.cost, detected.rejected) == (4, Decimal("4.0904"), 1)
    assert (plain.records, plain.cost) == (detected.records, detected.cost)
    with pytest.raises(FileNotFoundError):
        run_scan([master, workdir / "gone.csv"], policy, ScanOptions(detect=True))
