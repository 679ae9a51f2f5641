"""The daily report: figures equal the records' sums (store and file alike), limits and
normal traffic, CSV/PDF/HTML, the CLI, and the schedule mailing a local SMTP server."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
from typer.testing import CliRunner

from tests.notify.conftest import SmtpServer, message_of
from tests.web.demodata import HACKED, TZ, Demo
from tollguard.reports.daily import daily_report
from tollguard.reports.daily_render import render
from tollguard.store.engine import make_engine


def sums(demo: Demo, account: str, day: date) -> tuple[int, int, int]:
    frame = demo.rated.filter((pl.col("account") == account) & (pl.col("lday") == day))
    return (
        frame.height,
        int(frame.get_column("billsec").sum()),
        int(frame.get_column("cost_e4").sum()),
    )


def test_figures_equal_the_records_sums_from_store_and_file(demo: Demo) -> None:
    day = demo.hack_day
    engine = make_engine(demo.store.db_url)
    from_db = daily_report(demo.policy, HACKED, day, engine=engine)
    from_file = daily_report(demo.policy, HACKED, day, records=demo.out / "rated.parquet")
    calls, billsec, cost_e4 = sums(demo, HACKED, day)
    for report in (from_db, from_file):
        assert (report.total.calls, report.total.billsec, report.total.cost_e4) == (
            calls,
            billsec,
            cost_e4,
        )
        assert sum(h.bucket.calls for h in report.by_hour) == calls
        assert sum(h.bucket.cost_e4 for h in report.by_hour) == cost_e4
        assert sum(d.bucket.cost_e4 for d in report.by_destination) == cost_e4
        assert sum(d.bucket.calls for d in report.by_country) == calls
    assert from_db.to_dict() | {"generated_at": None} == from_file.to_dict() | {
        "generated_at": None
    }
    # per hour: the local hours of Europe/Amsterdam
    frame = demo.rated.filter((pl.col("account") == HACKED) & (pl.col("lday") == day))
    hours = frame.group_by(pl.col("start").dt.convert_time_zone(TZ).dt.hour().alias("h")).len()
    for h, n in hours.iter_rows():
        assert from_db.by_hour[h].bucket.calls == n
    engine.dispose()


def test_limits_normal_and_deviations_on_the_hack_day(demo: Demo) -> None:
    day = demo.hack_day
    report = daily_report(demo.policy, HACKED, day, records=demo.out / "rated.parquet")
    limit = next(x for x in report.limits if x.name == "max_spend_per_day")
    assert limit.limit == Decimal("500.00") and limit.used == report.total.cost
    # the previous same weekday is in the data: normal from one week
    assert report.normal is not None and report.normal.weeks == 1
    _, _, prev_cost = sums(demo, HACKED, day - timedelta(days=7))
    assert report.normal.cost_e4 == prev_cost
    tl = next(c for c in report.by_country if c.country == "TL")
    assert tl.new_country
    assert any("TL" in d and "not called" in d for d in report.deviations)
    assert any(h.flags for h in report.by_hour)
    if report.total.cost > Decimal(500):
        assert any("exceeded" in d for d in report.deviations)
    # a quiet normal day of a normal account: no deviations of its day figures
    quiet = daily_report(demo.policy, "kapper-schouten", day + timedelta(days=3),
                         records=demo.out / "rated.parquet")  # fmt: skip
    assert not any("against a normal" in d for d in quiet.deviations)


def test_formats(demo: Demo) -> None:
    day = demo.hack_day
    report = daily_report(demo.policy, HACKED, day, records=demo.out / "rated.parquet")
    csv_text = render(report, "csv").decode()
    rows = pl.read_csv(csv_text.encode(), infer_schema=False)
    total = rows.filter(pl.col("section") == "total").row(0, named=True)
    assert int(total["calls"]) == report.total.calls
    assert Decimal(total["cost"]) == report.total.cost
    hours = rows.filter(pl.col("section") == "hour")
    assert hours.height == 24
    assert sum(Decimal(c) for c in hours.get_column("cost")) == report.total.cost
    dest = rows.filter(pl.col("section") == "destination")
    assert sum(Decimal(c) for c in dest.get_column("cost")) == report.total.cost
    html = render(report, "html").decode()
    assert f'id="total-cost">EUR {report.total.cost}<' in html
    assert (
        "Europe/Amsterdam" in html
        and "<svg" in html
        and "http" not in html.split("<body>")[0].replace("http://www.w3.org", "")
    )
    pdf = render(report, "pdf")
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    assert HACKED.encode() in pdf and str(report.total.cost).encode() in pdf


def test_cli_daily(demo: Demo) -> None:
    from tollguard.cli import _register, app

    _register()
    day = demo.hack_day
    out = demo.out / "cli-daily.csv"
    result = CliRunner().invoke(app, [
        "report", "daily", "--account", HACKED, "--date", day.isoformat(), "--db", demo.store.db_url,
        "--policy", str(demo.out / "policy.toml"), "--format", "csv", "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    calls, _, cost_e4 = sums(demo, HACKED, day)
    line = out.read_text().splitlines()[1].split(",")
    assert line[0] == "total" and int(line[3]) == calls
    assert Decimal(line[6]) == Decimal(cost_e4) / 10000
    bad = CliRunner().invoke(app, ["report", "daily", "--account", HACKED, "--date", "yesterday",
                                   "--db", demo.store.db_url])  # fmt: skip
    assert bad.exit_code == 2


def test_schedule_mails_the_report_with_csv_once(
    demo: Demo, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    from tollguard.cli import _register, app

    _register()
    schedule = tmp_path / "reports.toml"
    schedule.write_text(
        f'[accounts."{HACKED}".report]\ndaily_at = "07:00"\nto = ["it@hoek.example"]\n'
        '[accounts."kapper-schouten".report]\ndaily_at = "09:30"\nto = ["kapper@example.net"]\n'
    )
    day = demo.hack_day
    now = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(TZ)).replace(
        hour=7, minute=5
    )
    args = [
        "report", "schedule", "--schedule", str(schedule), "--policy", str(demo.out / "policy.toml"),
        "--db", demo.store.db_url, "--smtp", f"smtp://{smtp_server.host}:{smtp_server.port}",
        "--once", "--now", now.isoformat(),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # 07:05: the hack account's 07:00 report of yesterday is due; the 09:30 one is not
    # (its last due day, the day before, goes out instead: once)
    envelopes = smtp_server.collector.messages
    by_rcpt = {e.rcpt_tos[0]: e for e in envelopes}
    assert set(by_rcpt) == {"it@hoek.example", "kapper@example.net"}
    msg = message_of(by_rcpt["it@hoek.example"])
    assert f"{HACKED} {day}" in msg["Subject"] and "DEVIATIONS" in msg["Subject"]
    attachments = [p for p in msg.iter_attachments()]
    assert [a.get_filename() for a in attachments] == [f"tollguard-{HACKED}-{day}.csv"]
    csv_text = attachments[0].get_content()
    calls, _, cost_e4 = sums(demo, HACKED, day)
    total = csv_text.splitlines()[1].split(",")
    assert int(total[3]) == calls and Decimal(total[6]) == Decimal(cost_e4) / 10000
    kapper = message_of(by_rcpt["kapper@example.net"])
    assert str(day - timedelta(days=1)) in kapper["Subject"]
    # a second run at the same time sends nothing more
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0
    assert len(smtp_server.collector.messages) == 2
