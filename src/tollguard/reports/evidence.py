"""The case file (evidence pack): every record of a case with its rated cost and the
rate-deck row that priced it, totals that reconcile exactly, the timeline, the policy in
force and the alerts with their explanations, as CSV, JSON, HTML and PDF.

Which records belong to a case (``select_case_records``): for each alert of the case,
the records matching its subject (number: called number; prefix: called number starts
with it; country: destination country; number type; account: every call) of the alert's
account (of any account for a case about a called number), that end at or after the
alert's first record; plus every record id the alerts name as evidence. ``until``
(default: when the case was closed, else no limit) ends the window.

Totals: per currency, the sum of the integer ten-thousandths of every rated record; the
writer re-reads the per-record costs it wrote to records.csv and refuses to finish
(``ReconciliationError``) unless their sum equals the stated total exactly.
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tollguard.cases import audit
from tollguard.cases.model import Case
from tollguard.cases.service import CaseService
from tollguard.cdr.model import cost_from_e4
from tollguard.detect.alert import Alert
from tollguard.reports.evidence_pdf import PdfDocument

TEMPLATES = Path(__file__).parent / "evidence_templates"
RECORD_FIELDS = [
    "record_id", "account", "caller", "callee", "callee_e164", "country", "number_type",
    "start", "answer", "end", "duration", "billsec", "disposition", "deck", "deck_row",
    "prefix", "destination", "rate_per_minute", "billing", "charged_seconds", "cost",
    "currency", "source_file", "source_line", "alerts",
]  # fmt: skip
RENDER_CAP = 5000  # records shown in HTML/PDF; records.csv always has all


class ReconciliationError(AssertionError):
    pass


@dataclass
class EvidenceResult:
    case_id: str
    directory: Path
    files: list[str]
    records: int
    totals: list[dict[str, Any]]
    zip_path: Path | None = None
    manifest_sha256: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "directory": str(self.directory),
            "files": self.files,
            "records": self.records,
            "totals": self.totals,
            "zip": str(self.zip_path) if self.zip_path else None,
            "manifest_sha256": self.manifest_sha256,
            "notes": self.notes,
        }


def _alert_mask(frame: pl.DataFrame, alert: Alert, any_account: bool) -> pl.Expr:
    kind = alert.subject_kind
    subj = alert.subject
    if kind == "number":
        mask = pl.col("callee_e164") == subj
    elif kind == "prefix":
        prefix = subj if subj.startswith("+") else f"+{subj}"
        mask = pl.col("callee_e164").str.starts_with(prefix)
    elif kind == "country":
        mask = pl.col("country") == subj
    elif kind == "number_type":
        mask = pl.col("number_type").str.to_uppercase() == subj.upper()
    else:
        mask = pl.lit(True)
    if not any_account:
        mask = mask & (pl.col("account") == alert.account)
    return mask.fill_null(False) & (pl.col("end") >= alert.started_at)


def select_case_records(
    frame: pl.DataFrame, case: Case, alerts: list[Alert], *, until: datetime | None = None
) -> pl.DataFrame:
    """The case's records (see module doc), each with the ids of the alerts it supports."""
    any_account = case.subject_kind == "number"
    until = until or case.closed_at
    tagged: list[pl.DataFrame] = []
    for alert in alerts:
        mask = _alert_mask(frame, alert, any_account) | pl.col("record_id").is_in(
            alert.evidence.record_ids
        )
        if until is not None:
            mask = mask & (pl.col("start") <= until)
        tagged.append(frame.filter(mask).select("record_id").with_columns(alert=pl.lit(alert.id)))
    if not tagged:
        return frame.head(0).with_columns(alerts=pl.lit("", dtype=pl.String))
    links = (
        pl.concat(tagged)
        .group_by("record_id")
        .agg(pl.col("alert").unique().sort().str.join(" ").alias("alerts"))
    )
    return frame.join(links, on="record_id", how="inner").sort("start", "record_id")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def _policy_text(policy_path: Path | None, service: CaseService, account: str) -> tuple[str, str]:
    if policy_path is not None:
        raw = policy_path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        return raw.decode("utf-8", "replace"), f"{policy_path.name} (sha256 {digest})"
    if service.policy is not None:
        resolved = service.policy.account(account).model_dump(mode="json")
        return (
            orjson.dumps(resolved, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode(),
            f"resolved policy of account {account} (no policy file given)",
        )
    return "", "no policy was given to the export (--policy FILE)"


def export_case(
    service: CaseService,
    case_id: str,
    out_dir: Path,
    records: pl.DataFrame,
    *,
    policy_path: Path | None = None,
    make_zip: bool = False,
    until: datetime | None = None,
    actor: str = "tollguard",
    now: datetime | None = None,
    render_cap: int = RENDER_CAP,
) -> EvidenceResult:
    now = now or datetime.now(UTC)
    case = service.get(case_id, detail=True)
    alerts = service.case_alerts(case.id)
    selected = select_case_records(records, case, alerts, until=until)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    notes: list[str] = []

    # records.csv: every record, exact cost text, the deck row that priced it
    rows: list[dict[str, str]] = []
    totals_e4: dict[str, int] = {}
    counts: dict[str, list[int]] = {}
    unrated = 0
    for rec in selected.iter_rows(named=True):
        e4 = rec["cost_e4"]
        cur = rec["currency"] or case.currency
        row = {k: _cell(rec.get(k)) for k in RECORD_FIELDS if k != "cost"}
        row["cost"] = "" if e4 is None else str(cost_from_e4(int(e4)))
        row["currency"] = cur
        rows.append(row)
        c = counts.setdefault(cur, [0, 0, 0])
        c[0] += 1
        if e4 is None:
            unrated += 1
            continue
        c[1] += 1
        c[2] += int(rec["billsec"] or 0)
        totals_e4[cur] = totals_e4.get(cur, 0) + int(e4)
    records_csv = out_dir / "records.csv"
    with records_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=RECORD_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    files.append("records.csv")
    totals = [
        {
            "currency": cur,
            "records": counts[cur][0],
            "rated": counts[cur][1],
            "billsec": counts[cur][2],
            "cost": str(cost_from_e4(totals_e4.get(cur, 0))),
        }
        for cur in sorted(counts)
    ]
    _reconcile(records_csv, totals)
    if unrated:
        notes.append(f"{unrated} record(s) unrated: listed without cost, not in the totals")
    alert_records = sum(a.records for a in alerts)
    notes.append(
        f"{len(rows)} records selected; the alerts counted {alert_records} (records can "
        "support several alerts, and patterns keep growing after an alert)"
    )

    alerts_json = [a.to_dict() for a in alerts]
    (out_dir / "alerts.json").write_bytes(orjson.dumps(alerts_json, option=orjson.OPT_INDENT_2))
    files.append("alerts.json")

    timers = [t.to_dict() for t in case.timers()]
    events = [e.to_dict() for e in case.events]
    with (out_dir / "timeline.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["at", "kind", "actor", "text"])
        for t in case.timers():
            if t.at is not None:
                w.writerow([t.at.isoformat(), f"timer:{t.name}", "", t.sentence()])
        for e in case.events:
            w.writerow([e.at.isoformat(), e.kind, e.actor, e.text])
    files.append("timeline.csv")

    policy_text, policy_note = _policy_text(policy_path, service, case.account)
    if policy_path is not None:
        (out_dir / "policy.toml").write_text(policy_text, encoding="utf-8")
        files.append("policy.toml")
    elif policy_text:
        (out_dir / "policy.json").write_text(policy_text, encoding="utf-8")
        files.append("policy.json")

    selection = (
        "per alert: records matching its subject, "
        + ("from any account (a case about a called number)" if case.subject_kind == "number"
           else f"of account {case.account}")
        + ", ending at or after the alert's first record"
        + (f", starting no later than {(until or case.closed_at).isoformat()}"  # type: ignore[union-attr]
           if (until or case.closed_at) else "")
        + "; plus the records the alerts name as evidence"
    )  # fmt: skip
    summary = {
        "case": case.to_dict(),
        "exported_at": now.isoformat(),
        "exported_by": actor,
        "totals": totals,
        "unrated_records": unrated,
        "selection": selection,
        "policy": policy_note,
        "timeline": events,
        "notes": notes,
    }
    (out_dir / "case.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    files.append("case.json")

    context = {
        "case": case.to_dict(),
        "exported_at": now.isoformat(),
        "exported_by": actor,
        "totals": totals,
        "unrated": unrated,
        "selection": selection,
        "timers": timers,
        "events": events,
        "alerts": alerts_json,
        "policy_text": policy_text,
        "policy_note": policy_note,
        "rows": rows[:render_cap],
        "record_count": len(rows),
        "truncated": len(rows) > render_cap,
    }
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    html = env.get_template("case.html").render(**context)
    (out_dir / "case.html").write_text(html, encoding="utf-8")
    files.append("case.html")
    (out_dir / "case.pdf").write_bytes(_pdf(context))
    files.append("case.pdf")

    sums = []
    for name in files:
        digest = hashlib.sha256((out_dir / name).read_bytes()).hexdigest()
        sums.append(f"{digest}  {name}\n")
    manifest = "".join(sums).encode()
    (out_dir / "SHA256SUMS").write_bytes(manifest)
    files.append("SHA256SUMS")
    manifest_sha = hashlib.sha256(manifest).hexdigest()

    zip_path: Path | None = None
    if make_zip:
        zip_path = out_dir.with_suffix(".zip")
        with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in files:
                zf.write(out_dir / name, arcname=f"{case.id}/{name}")

    with service.engine.begin() as conn:
        audit.append(
            conn,
            actor=actor,
            action="evidence.export",
            subject=case.id,
            data={"records": len(rows), "totals": totals, "manifest_sha256": manifest_sha},
            at=now,
        )
    return EvidenceResult(case.id, out_dir, files, len(rows), totals, zip_path, manifest_sha, notes)


def _reconcile(records_csv: Path, totals: list[dict[str, Any]]) -> None:
    """Re-read the written per-record costs; their sum must equal each stated total."""
    sums: dict[str, Decimal] = {}
    with records_csv.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["cost"]:
                sums[row["currency"]] = sums.get(row["currency"], Decimal(0)) + Decimal(row["cost"])
    for t in totals:
        written = sums.get(t["currency"], Decimal(0))
        if written != Decimal(t["cost"]):
            raise ReconciliationError(
                f"{t['currency']}: per-record costs sum to {written}, stated total {t['cost']}"
            )


def _pdf(ctx: dict[str, Any]) -> bytes:
    case = ctx["case"]
    doc = PdfDocument(title=f"tollguard case file {case['id']}")
    doc.line(f"Case {case['id']}: {case['title']}", font="bold", size=15)
    doc.line(
        f"{case['severity'].upper()} - status {case['status']} - account {case['account']} - "
        f"{case['subject_kind']} {case['subject']}"
        + (f" - assigned to {case['assignee']}" if case["assignee"] else "")
    )
    doc.line(f"Exported {ctx['exported_at']} by {ctx['exported_by']}", size=8)
    doc.heading("Totals")
    for t in ctx["totals"]:
        doc.line(
            f"{t['currency']} {t['cost']}  ({t['records']} records, {t['rated']} rated, "
            f"{t['billsec']} billable seconds)",
            font="bold",
        )
    doc.line("Reconciled: the total equals the sum of the per-record costs, to the cent.")
    if ctx["unrated"]:
        doc.line(f"{ctx['unrated']} record(s) unrated: listed without cost, not counted.")
    doc.line(f"Records selected: {ctx['selection']}", size=8)
    doc.heading("Timeline")
    for t in ctx["timers"]:
        doc.line(t["text"])
    doc.space(4)
    for e in ctx["events"]:
        doc.line(f"{e['at']}  {e['kind']:<14} {e['actor']:<12} {e['text']}"[:170], font="mono",
                 size=7.5)  # fmt: skip
    doc.heading(f"Alerts ({len(ctx['alerts'])})")
    for a in ctx["alerts"]:
        exp = a["explanation"]
        limit = exp.get("threshold", exp.get("expected"))
        doc.line(
            f"{a['id']}  {a['detector']}  {a['severity']}  {a['subject_kind']} {a['subject']}  "
            f"{a['records']} records  {a['currency']} {a['cost']}",
            font="bold",
            size=8.5,
        )
        doc.line(f"  {exp.get('parameter')} = {exp.get('value')} (threshold/expected {limit})")
        doc.line(f"  {exp.get('why', '')}"[:180])
        doc.line(f"  started {a['started_at']}, detected {a['detected_at']}", size=8)
    doc.heading("Policy in force")
    doc.line(ctx["policy_note"], size=8)
    for text in ctx["policy_text"].splitlines()[:400]:
        doc.line(text[:160], font="mono", size=7)
    doc.page_break()
    doc.line(f"Records ({ctx['record_count']})", font="bold", size=12)
    if ctx["truncated"]:
        doc.line(f"First {len(ctx['rows'])} of {ctx['record_count']}; records.csv holds all.")
    header = (
        f"{'record':<26} {'start (UTC)':<25} {'callee':<16} {'bill s':>6} {'deck':<12} "
        f"{'row':>5} {'prefix':<10} {'rate/min':>9} {'billing':<7} {'chg s':>6} {'cost':>12}"
    )
    doc.line(header, font="mono", size=7)
    for r in ctx["rows"]:
        doc.line(
            f"{r['record_id'][-26:]:<26} {r['start'][:25]:<25} "
            f"{(r['callee_e164'] or r['callee'])[:16]:<16} {r['billsec']:>6} "
            f"{r['deck'][:12]:<12} {r['deck_row']:>5} {r['prefix'][:10]:<10} "
            f"{r['rate_per_minute'][:9]:>9} {r['billing'][:7]:<7} {r['charged_seconds']:>6} "
            f"{r['cost']:>12}",
            font="mono",
            size=7,
        )
    return doc.render()
