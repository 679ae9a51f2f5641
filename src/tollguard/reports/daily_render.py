"""The daily report as HTML (self-contained, inline SVG chart), CSV and PDF."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from tollguard.reports.daily import DailyReport
from tollguard.reports.evidence_pdf import PdfDocument
from tollguard.web.svg import bar_line_chart, meter

TEMPLATES = Path(__file__).parent / "templates"
FORMATS = ("html", "pdf", "csv")
CSV_FIELDS = [
    "section", "key", "country", "calls", "answered", "minutes", "cost", "currency",
    "normal_calls", "normal_cost", "limit", "state",
]  # fmt: skip


def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), trim_blocks=True
    )


def hour_chart(report: DailyReport, kind: str = "cost") -> str:
    if kind == "cost":
        bars: list[Decimal | None] = [h.bucket.cost for h in report.by_hour]
        line = [h.normal_cost for h in report.by_hour]
        unit = ""
    else:
        bars = [Decimal(h.bucket.calls) for h in report.by_hour]
        line = [h.normal_calls for h in report.by_hour]
        unit = ""
    return str(
        bar_line_chart(
            f"daily-{kind}",
            bars,
            line,
            ticks=[(h, f"{h:02d}") for h in range(0, 24, 3)],
            bar_label=report.day.isoformat(),
            line_label="normal",
            unit=unit,
            width=720,
            height=170,
            title=f"{kind} per hour ({report.zone_label})",
            highlight=[bool(h.flags) for h in report.by_hour],
        )
    )


def render_html(report: DailyReport) -> str:
    return (
        _env()
        .get_template("daily.html")
        .render(
            r=report,
            chart_cost=hour_chart(report, "cost"),
            chart_calls=hour_chart(report, "calls"),
            meter=meter,
        )
    )


def render_csv(report: DailyReport) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    cur = report.currency
    t = report.total
    normal = report.normal
    w.writerow(
        {
            "section": "total", "key": report.day.isoformat(), "calls": t.calls,
            "answered": t.answered, "minutes": t.minutes, "cost": t.cost, "currency": cur,
            "normal_calls": "" if normal is None else normal.calls.quantize(Decimal("0.01")),
            "normal_cost": "" if normal is None else normal.cost,
        }
    )  # fmt: skip
    for h in report.by_hour:
        b = h.bucket
        w.writerow(
            {
                "section": "hour", "key": f"{h.hour:02d}", "calls": b.calls,
                "answered": b.answered, "minutes": b.minutes, "cost": b.cost, "currency": cur,
                "normal_calls": "" if h.normal_calls is None else h.normal_calls,
                "normal_cost": "" if h.normal_cost is None else h.normal_cost,
                "state": "deviation" if h.flags else "",
            }
        )  # fmt: skip
    for d in report.by_destination:
        b = d.bucket
        w.writerow(
            {
                "section": "destination", "key": d.destination, "country": d.country,
                "calls": b.calls, "answered": b.answered, "minutes": b.minutes, "cost": b.cost,
                "currency": cur,
            }
        )  # fmt: skip
    for d in report.by_country:
        b = d.bucket
        w.writerow(
            {
                "section": "country", "key": d.country, "country": d.country, "calls": b.calls,
                "answered": b.answered, "minutes": b.minutes, "cost": b.cost, "currency": cur,
                "state": "new" if d.new_country else "",
            }
        )  # fmt: skip
    for lim in report.limits:
        w.writerow(
            {
                "section": "limit", "key": lim.name, "cost": lim.used if isinstance(
                    lim.used, Decimal) else "", "calls": lim.used if isinstance(lim.used, int)
                else "", "limit": lim.limit, "state": lim.state, "currency": cur,
            }
        )  # fmt: skip
    return buf.getvalue()


def render_pdf(report: DailyReport) -> bytes:
    doc = PdfDocument(title=f"tollguard daily report {report.account} {report.day}")
    cur = report.currency
    t = report.total
    doc.line(f"Daily traffic report: {report.account}", font="bold", size=16)
    doc.line(f"{report.day.isoformat()} ({report.day:%A}), times in {report.zone_label}")
    doc.space(6)
    doc.line(
        f"Calls {t.calls:,}   answered {t.answered:,}   minutes {t.minutes}   "
        f"cost {cur} {t.cost}" + (f"   unrated {t.unrated}" if t.unrated else ""),
        font="bold",
        size=11,
    )
    if report.normal is not None:
        n = report.normal
        doc.line(
            f"Normal (mean of {n.weeks} previous {report.day:%A}s): calls {n.calls:.1f}   "
            f"minutes {n.minutes}   cost {cur} {n.cost}"
        )
    else:
        doc.line("Normal traffic: no previous weeks in the records yet.")
    doc.heading("Deviations")
    for text in report.deviations or ["none"]:
        doc.line(("! " if report.deviations else "") + text)
    if report.limits:
        doc.heading("Limits")
        for lim in report.limits:
            doc.line(
                f"{lim.name:46} used {lim.used!s:>12}  limit {lim.limit!s:>12}  "
                f"{lim.share * 100:6.1f}%  {lim.state}",
                font="mono",
            )
    doc.heading("By hour")
    doc.line(f"{'hour':5} {'calls':>7} {'normal':>8} {'minutes':>10} {'cost':>12} {'normal':>10}",
             font="mono")  # fmt: skip
    for h in report.by_hour:
        b = h.bucket
        doc.line(
            f"{h.hour:02d}    {b.calls:>7} {_s(h.normal_calls):>8} {b.minutes!s:>10} "
            f"{b.cost!s:>12} {_s(h.normal_cost):>10}  "
            + ("<< " + "; ".join(h.flags) if h.flags else ""),
            font="mono",
        )
    doc.heading("By destination")
    doc.line(f"{'destination':40} {'country':7} {'calls':>7} {'minutes':>10} {'cost':>12}",
             font="mono")  # fmt: skip
    for d in report.by_destination:
        b = d.bucket
        doc.line(
            f"{d.destination[:40]:40} {d.country:7} {b.calls:>7} {b.minutes!s:>10} {b.cost!s:>12}",
            font="mono",
        )
    return doc.render()


def _s(v: Decimal | None) -> str:
    return "-" if v is None else str(v)


def render(report: DailyReport, fmt: str) -> bytes:
    if fmt == "html":
        return render_html(report).encode("utf-8")
    if fmt == "csv":
        return render_csv(report).encode("utf-8")
    if fmt == "pdf":
        return render_pdf(report)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")
