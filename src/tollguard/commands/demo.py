"""`tollguard demo`: a simulated month with the brief's fraud cases, scanned and replayed."""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console

from tollguard.commands.scan import describe_block, print_summary
from tollguard.detect.alert import alerts_jsonl
from tollguard.policy import Policy, load_policy
from tollguard.scan import ScanOptions, ScanResult, run_scan

if TYPE_CHECKING:
    from tollguard.cases.service import CaseService
    from tollguard.limits.service import AuthorizeService

err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the simulated data and results.")] = Path(
        "demo-out"
    ),
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 1,
    days: Annotated[int, typer.Option(min=7, max=62, help="Days of traffic.")] = 28,
    scale: Annotated[
        float, typer.Option(help="Size of the premium-rate pumping (1.0 = 470,000 calls).")
    ] = 0.02,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve",
            help="After the summary, load the store and serve the dashboard until Ctrl-C "
            "(--no-serve: load the store, print the login, exit; for CI).",
        ),
    ] = True,
    host: Annotated[str, typer.Option(help="Dashboard address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Dashboard port (0 or busy: a free one).")] = 8080,
) -> None:
    """Simulate a month with the brief's fraud cases, detect them, open the dashboard.

    A month of traffic for 40 businesses plus the brief's fraud cases is priced, the fraud
    detected and what tollguard would have stopped shown; then the month is loaded into
    the embedded store and the dashboard opened."""
    from tollguard.sim import simulate

    err.print(f"[bold]1/4[/bold] simulating {days} days of traffic into {out}/ (seed {seed}) ...")
    sim = simulate(out, ["all"], days=days, seed=seed, scale=scale)
    err.print(f"      {sim.calls:,} calls written to {sim.files['cdr']}")
    err.print("[bold]2/4[/bold] scanning: pricing, detecting, replaying with enforcement ...")
    policy = load_policy(sim.files["policy"])
    options = ScanOptions(
        detect=True,
        enforce=True,
        out=out / "rated.parquet",
        quarantine_out=out / "rejected.jsonl",
    )
    result = run_scan([sim.files["cdr"]], policy, options)
    (out / "alerts.jsonl").write_bytes(alerts_jsonl(result.alerts))
    (out / "scan.json").write_bytes(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2))
    console = Console() if Console().is_terminal else Console(width=140)
    print_summary(result, console)
    console.rule("What the brief's cases would have cost, and what tollguard would have stopped")
    for scenario in sim.truth["scenarios"]:
        account = scenario["account"]
        enf = result.enforcement.get(account)
        if enf is None or enf.first_block is None:
            console.print(f"{scenario['scenario']:12} {account}: not blocked")
            continue
        console.print(
            f"{scenario['scenario']:12} {account}: {describe_block(enf)}; "
            f"EUR {enf.cost_incurred:,} incurred instead of "
            f"EUR {enf.cost_incurred + enf.cost_prevented:,} "
            f"({enf.calls_refused:,} calls refused)"
        )
    console.print(
        f"\nFiles in {out}/: Master.csv (CDRs), rates.csv, policy.toml, truth.json, "
        "rated.parquet, alerts.jsonl, scan.json, rejected.jsonl"
    )
    console.print(
        f"Try: tollguard scan {out}/Master.csv --policy {out}/policy.toml --enforce --json"
    )
    console.print(f"     tollguard evaluate {out}/   (detection against the ground truth)")
    err.print(f"[bold]3/4[/bold] loading the month into the store {out}/tollguard.db ...")
    loaded = load_demo_store(out, policy, result, sim.truth)
    for line in loaded.summary():
        err.print(f"      {line}")
    err.print("[bold]4/4[/bold] dashboard")
    serve_dashboard(loaded, host=host, port=port, serve=serve, console=console)


DEMO_USERS = (
    ("admin", "admin", ()),
    ("analyst", "analyst", ()),
)


@dataclass
class DemoStore:
    """What step 3 put in the store, and what the dashboard needs to open it."""

    out: Path
    db_url: str
    state_url: str
    users_file: Path
    policy: Policy
    records: int
    cases: int
    blocked: list[str]
    holds: list[str]
    logins: list[tuple[str, str, str]]  # (user, password, role)
    seconds: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        lines = [
            f"{self.records:,} rated records and {self.cases} cases in {self.db_url} "
            f"({self.seconds:.1f} s)",
        ]
        if self.blocked:
            lines.append(f"blocked: {', '.join(self.blocked)} (state {self.state_url})")
        if self.holds:
            lines.append(f"payout held: {', '.join(self.holds)}")
        lines.extend(self.notes)
        return lines


def load_demo_store(
    out: Path, policy: Policy, result: ScanResult, truth: dict[str, Any]
) -> DemoStore:
    """Load the scanned month into ``out/tollguard.db`` (rated records through the
    ingest step, alerts into cases), block the hacked PBX through the authorize service,
    hold the pumped premium-rate number's payout, and write a demo users file."""
    import polars as pl

    from tollguard.cases.payouts import PayoutLedger, amount_for_number
    from tollguard.cases.service import CaseService
    from tollguard.ingest.core import Ingestor
    from tollguard.store.engine import make_engine
    from tollguard.store.migrate import upgrade
    from tollguard.web.users import UserStore

    started = time.perf_counter()
    db_file = out / "tollguard.db"
    state_file = out / "state.db"
    for stale in (db_file, state_file, *out.glob("tollguard.db-*"), *out.glob("state.db-*")):
        stale.unlink(missing_ok=True)
    db_url = f"sqlite:///{db_file}"
    state_url = f"sqlite:///{state_file}"
    upgrade(db_url)
    engine = make_engine(db_url)
    frame = pl.read_parquet(out / "rated.parquet")
    frame = frame.with_columns(
        (pl.col("cost").cast(pl.Decimal(24, 4)) * 10000).cast(pl.Int64).alias("cost_e4")
    ).drop("cost")
    ingestor = Ingestor(engine, policy)
    stored = ingestor.commit("demo:" + str(out / "Master.csv"), frame, rated=True)
    cases = CaseService(engine, policy=policy)
    cases.ingest_many(result.alerts)
    service = _demo_service(policy, state_url)
    blocked: list[str] = []
    holds: list[str] = []
    notes: list[str] = []
    by_name = {s["scenario"]: s for s in truth.get("scenarios", [])}
    pbx = by_name.get("pbx-hack")
    if pbx is not None:
        account = pbx["account"]
        reason = f"calls to {pbx.get('subject_country', 'a high-risk country')} at night (demo)"
        at = datetime.fromisoformat(pbx["onset"]).astimezone(UTC)
        service.block(account, reason, "demo", at)
        service.audit("demo", "account.block", account, {"reason": reason}, "*")
        blocked.append(account)
        open_case = next(iter(cases.list_cases(account=account, status=["open"], limit=1)), None)
        if open_case is not None:
            cases.action(open_case.id, "block", actor="demo", note=reason, now=at)
    prs = by_name.get("prs-pumping")
    if prs is not None and prs.get("subject_numbers"):
        number = prs["subject_numbers"][0]
        onset = datetime.fromisoformat(prs["onset"]).astimezone(UTC).date()
        end = datetime.fromisoformat(prs["end"]).astimezone(UTC).date()
        records = frame.select("callee_e164", "start", "cost_e4", "currency")
        amount, calls, currency = amount_for_number(records, number, onset, end)
        case = next(iter(cases.list_cases(account=prs["account"], limit=1)), None)
        hold = PayoutLedger(engine).hold(
            number, onset, end, amount, currency=currency,
            reason=f"call generator: {calls:,} calls in one weekend (demo)", actor="demo",
            case_id=case.id if case else None, now=datetime.fromisoformat(prs["end"]),
        )  # fmt: skip
        holds.append(f"{hold.id} {number} {currency} {amount} ({calls:,} calls)")
    users_file = out / "users.toml"
    users_file.unlink(missing_ok=True)
    users = UserStore.load(users_file)
    logins: list[tuple[str, str, str]] = []
    for name, role, accounts in DEMO_USERS:
        password = secrets.token_urlsafe(9)
        users.add(name, role, password, list(accounts))
        logins.append((name, password, role))
    if pbx is not None:
        password = secrets.token_urlsafe(9)
        users.add(pbx["account"], "customer", password, [pbx["account"]])
        logins.append((pbx["account"], password, f"customer (sees only {pbx['account']})"))
    n_cases = len(cases.list_cases(limit=100_000))
    engine.dispose()
    service.state.close()
    return DemoStore(
        out, db_url, state_url, users_file, policy, stored.inserted, n_cases, blocked, holds,
        logins, time.perf_counter() - started, notes,
    )  # fmt: skip


def _demo_service(policy: Policy, state_url: str) -> AuthorizeService:
    from tollguard.limits.backends import open_state
    from tollguard.limits.service import AuthorizeService, Settings

    # the simulated businesses are not all in the demo policy: authorize them with
    # [defaults] (as `serve --allow-unknown-accounts` does)
    return AuthorizeService(
        policy, open_state(state_url), settings=Settings(allow_unknown_accounts=True)
    )


def _free_port(host: str, port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return port
        except OSError:
            s.bind((host, 0))
            return int(s.getsockname()[1])


def build_demo_app(loaded: DemoStore) -> tuple[Any, AuthorizeService, CaseService, str]:
    """The app ``tollguard serve --dashboard`` would build over the demo store, with a
    fresh admin API key (returned) so the API is not left open."""
    from tollguard.api.app import create_app
    from tollguard.api.auth import Keyring, hash_key, new_key
    from tollguard.cases.service import CaseService
    from tollguard.store.engine import make_engine
    from tollguard.web.app import Dashboard
    from tollguard.web.users import UserStore

    service = _demo_service(loaded.policy, loaded.state_url)
    cases = CaseService(make_engine(loaded.db_url), policy=loaded.policy)
    key = new_key()
    keyring = Keyring.parse({"keys": [{"name": "demo-admin", "role": "admin", "tenant": "*",
                                        "sha256": hash_key(key)}]})  # fmt: skip
    web = Dashboard(service, UserStore.load(loaded.users_file), cases=cases)
    app = create_app(service, keyring, cases=cases, web=web.router)
    return app, service, cases, key


def serve_dashboard(
    loaded: DemoStore, *, host: str, port: int, serve: bool, console: Console
) -> None:
    port = _free_port(host, port) if port else _free_port(host, 0)
    url = f"http://{host}:{port}/"
    console.rule("The dashboard")
    console.print(f"Open [bold]{url}[/bold] and log in as:")
    for name, password, role in loaded.logins:
        console.print(f"  user [bold]{name}[/bold]  password [bold]{password}[/bold]  ({role})")
    console.print(f"(users in {loaded.users_file}; add more with `tollguard users add`)")
    if loaded.blocked:
        console.print(
            f"The hacked PBX on its worst day: {url}accounts/{loaded.blocked[0]}"
            f"?day={_busiest_day(loaded)}"
        )
    console.print(
        f"Daily report: tollguard report daily --account "
        f"{loaded.blocked[0] if loaded.blocked else 'ACCOUNT'} "
        f"--date {_busiest_day(loaded)} --db {loaded.db_url} --policy {loaded.out}/policy.toml "
        f"--format html --out {loaded.out}/daily.html"
    )
    if not serve:
        console.print("--no-serve: not serving. Serve it yourself with:")
        console.print(
            f"  tollguard serve --policy {loaded.out}/policy.toml --db {loaded.db_url} "
            f"--state {loaded.state_url} --dashboard --users {loaded.users_file} "
            "--allow-unknown-accounts --no-auth"
        )
        return
    import uvicorn

    app, service, _, key = build_demo_app(loaded)
    console.print(f"API key (admin, for curl): {key}")
    console.print("Serving until Ctrl-C ...")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        service.state.close()


def _busiest_day(loaded: DemoStore) -> str:
    from sqlalchemy import func, select

    from tollguard.store.engine import make_engine
    from tollguard.store.schema import rated_records as t

    if not loaded.blocked:
        return date.today().isoformat()
    engine = make_engine(loaded.db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(t.c.local_day, func.sum(t.c.cost_e4).label("c"))
                .where(t.c.account == loaded.blocked[0])
                .group_by(t.c.local_day)
                .order_by(func.sum(t.c.cost_e4).desc())
                .limit(1)
            ).first()
    finally:
        engine.dispose()
    return str(row[0]) if row else date.today().isoformat()
