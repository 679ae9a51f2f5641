"""Build a simulated dataset: merge normal traffic and scenarios, write CDRs and ground truth."""

from __future__ import annotations

import csv
import heapq
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from random import Random
from typing import Any

from tollguard.cdr.model import CallRecord, Disposition
from tollguard.sim.calendar import holidays_between
from tollguard.sim.calls import (
    ANSWERED,
    BUSY,
    CONGESTION,
    FAILED,
    NO_ANSWER,
    TIMEZONE,
    SimCall,
    local_iso,
    local_string,
    to_utc,
)
from tollguard.sim.normal import (
    DOMESTIC_IN,
    INTL_IN,
    Account,
    choose_events,
    make_accounts,
    normal_stream,
)
from tollguard.sim.rates import price_e4, write_rates
from tollguard.sim.scenarios import (
    SCENARIOS,
    ScenarioRun,
    Window,
    pbx_hack,
    prs_pumping,
    sequential,
    voip_hack,
    wangiri,
)

FORMATS = ("asterisk", "freeswitch")
# Source names the CDR readers give these files, so record ids match `read_records`.
READER_SOURCE = {"asterisk": "asterisk-csv", "freeswitch": "freeswitch-csv"}
ALL_SCENARIOS = ("normal", *SCENARIOS)
DEFAULT_START = date(2026, 10, 1)
CDR_FILE = "Master.csv"

ASTERISK_DISPOSITION = {
    ANSWERED: "ANSWERED",
    NO_ANSWER: "NO ANSWER",
    BUSY: "BUSY",
    FAILED: "FAILED",
    CONGESTION: "CONGESTION",
}
FREESWITCH_CAUSE = {
    ANSWERED: "NORMAL_CLEARING",
    NO_ANSWER: "NO_ANSWER",
    BUSY: "USER_BUSY",
    FAILED: "NORMAL_TEMPORARY_FAILURE",
    CONGESTION: "NORMAL_CIRCUIT_CONGESTION",
}
DISPOSITION = {
    ANSWERED: Disposition.ANSWERED,
    NO_ANSWER: Disposition.NO_ANSWER,
    BUSY: Disposition.BUSY,
    FAILED: Disposition.FAILED,
    CONGESTION: Disposition.CONGESTION,
}


def expand_scenarios(scenarios: list[str] | tuple[str, ...] | str) -> list[str]:
    """Validate scenario names; "all" means every scenario. Normal traffic is always included."""
    names = [scenarios] if isinstance(scenarios, str) else list(scenarios)
    out: list[str] = []
    for name in names:
        if name == "all":
            out.extend(SCENARIOS)
        elif name in SCENARIOS:
            out.append(name)
        elif name != "normal":
            raise ValueError(
                f"unknown scenario {name!r}; use one of {', '.join((*ALL_SCENARIOS, 'all'))}"
            )
    return [s for s in SCENARIOS if s in out]  # canonical order, no duplicates


@dataclass
class _Tally:
    calls: int = 0
    first_start: int | None = None
    last_end: int | None = None
    record_ids: list[str] = field(default_factory=list)
    cost_e4: int = 0
    answered: int = 0


class Simulation:
    """One simulated dataset, fully determined by its parameters (never by the clock).

    ``calls()`` yields the merged calls in end order (the order a switch writes its CDR
    file); ``records()`` yields them as ``CallRecord``. After a full iteration, ``truth()``
    has the ground truth with counts and record ids.
    """

    def __init__(
        self,
        scenarios: list[str] | tuple[str, ...] | str = ("normal",),
        days: int = 30,
        seed: int = 1,
        accounts: int = 40,
        fmt: str = "asterisk",
        start: date | None = None,
        scale: float = 1.0,
        source: str | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        if days < 1:
            raise ValueError("days must be at least 1")
        if accounts < 1:
            raise ValueError("accounts must be at least 1")
        if not scale > 0:
            raise ValueError("scale must be positive")
        self.scenarios = expand_scenarios(scenarios)
        self.days = days
        self.seed = seed
        self.n_accounts = accounts
        self.fmt = fmt
        self.first = start or DEFAULT_START
        self.scale = scale
        self.source = source or READER_SOURCE[fmt]
        self._tallies: dict[str, _Tally] = {}
        self._by_account: dict[str, int] = {}
        self._done = False
        self._plan()
        self._fresh = True  # the planned streams have not been consumed yet

    # -- planning ---------------------------------------------------------------------------
    def _rng(self, part: str) -> Random:
        return Random(f"tollguard-sim:{self.seed}:{part}")

    def _plan(self) -> None:
        self.accounts: list[Account] = make_accounts(self._rng("accounts"), self.n_accounts)
        self.events = choose_events(self._rng("events"), self.accounts, self.first, self.days)
        win = Window(self.first, self.days)
        self.runs: list[ScenarioRun] = []
        for name in self.scenarios:
            rng = self._rng(name)
            if name == "pbx-hack":
                self.runs.append(pbx_hack(rng, win))
            elif name == "voip-hack":
                self.runs.append(voip_hack(rng, win))
            elif name == "prs-pumping":
                self.runs.append(prs_pumping(rng, win, self.scale))
            elif name == "wangiri":
                self.runs.append(wangiri(rng, win, self.accounts))
            elif name == "sequential":
                self.runs.append(sequential(rng, win))

    @property
    def end_date(self) -> date:
        return self.first + timedelta(days=self.days - 1)

    # -- generation -------------------------------------------------------------------------
    def _streams(self) -> list[Iterator[SimCall]]:
        streams = [
            normal_stream(self._rng("normal"), self.accounts, self.first, self.days, self.events)
        ]
        for run in self.runs:
            if run.victims:
                base_rng = self._rng(f"{run.name}:history")
                streams.append(normal_stream(base_rng, run.victims, self.first, self.days, None))
            streams.append(run.stream)
        return streams

    def calls(self) -> Iterator[SimCall]:
        """All calls in end order, with ``uid`` assigned; fills the truth as it goes."""
        if not self._fresh:  # streams are one-shot: plan again (same seed, same calls)
            self._plan()
        self._fresh = False
        keyed = [
            (((c.end, i, c.order), c) for c in stream) for i, stream in enumerate(self._streams())
        ]
        id_rng = self._rng("ids")
        seq = id_rng.randint(10, 5000)
        tallies: dict[str, _Tally] = {}
        by_account: dict[str, int] = {}
        for _, call in heapq.merge(*keyed, key=lambda kc: kc[0]):
            seq += 1
            if self.fmt == "asterisk":
                uid = f"{call.start}.{seq}"
            else:
                uid = str(uuid.UUID(int=id_rng.getrandbits(128), version=4))
            call.uid = uid
            tally = tallies.get(call.scenario)
            if tally is None:
                tally = tallies[call.scenario] = _Tally()
            tally.calls += 1
            by_account[call.account] = by_account.get(call.account, 0) + 1
            if call.scenario != "normal":
                if tally.first_start is None or call.start < tally.first_start:
                    tally.first_start = call.start
                if tally.last_end is None or call.end > tally.last_end:
                    tally.last_end = call.end
                tally.record_ids.append(f"{self.source}:{uid}")
                if call.answer is not None:
                    tally.answered += 1
                    tally.cost_e4 += price_e4(call.callee_e164, call.end - call.answer)
            yield call
        self._tallies, self._by_account, self._done = tallies, by_account, True

    def records(self) -> Iterator[CallRecord]:
        """The calls as ``CallRecord`` (UTC times), as a reader of the written file gives them."""
        for call in self.calls():
            yield self.to_record(call)

    def to_record(self, call: SimCall) -> CallRecord:
        uid = call.uid
        asterisk = self.fmt == "asterisk"
        return CallRecord(
            record_id=f"{self.source}:{uid}",
            account=call.account,
            caller=call.caller,
            callee=call.callee,
            start=to_utc(call.start),
            end=to_utc(call.end),
            duration=call.end - call.start,
            billsec=0 if call.answer is None else call.end - call.answer,
            disposition=DISPOSITION[call.disposition],
            answer=None if call.answer is None else to_utc(call.answer),
            source=self.source,
            hangup_cause=(ASTERISK_DISPOSITION if asterisk else FREESWITCH_CAUSE)[call.disposition],
            channel=call.channel if asterisk else "",
            dst_channel=call.dst_channel if asterisk else "",
            caller_e164=call.caller_e164,
            callee_e164=call.callee_e164,
            currency="EUR",
        )

    # -- ground truth -----------------------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        if not self._done:
            for _ in self.calls():
                pass
        scenario_accounts = {run.account for run in self.runs}
        for run in self.runs:
            scenario_accounts.update(run.info.get("victim_accounts", []))
        all_accounts: dict[str, dict[str, Any]] = {a.name: a.info() for a in self.accounts}
        for run in self.runs:
            for acc in run.victims:
                all_accounts[acc.name] = acc.info()
            all_accounts.update(run.carriers)
        all_accounts.setdefault(
            DOMESTIC_IN, {"kind": "carrier", "role": "domestic interconnect, inbound calls"}
        )
        all_accounts.setdefault(
            INTL_IN, {"kind": "carrier", "role": "international transit, inbound calls"}
        )
        for name, info in all_accounts.items():
            info["calls"] = self._by_account.get(name, 0)
        scenarios = []
        for run in self.runs:
            tally = self._tallies.get(run.name, _Tally())
            scenarios.append(
                {
                    "scenario": run.name,
                    "account": run.account,
                    **{k: v for k, v in run.info.items() if k != "params"},
                    "onset": local_iso(tally.first_start)
                    if tally.first_start is not None
                    else None,
                    "end": local_iso(tally.last_end) if tally.last_end is not None else None,
                    "calls": tally.calls,
                    "answered": tally.answered,
                    "cost_estimate": f"{tally.cost_e4 / 10000:.2f}",
                    "currency": "EUR",
                    "policy_limits": run.limits,
                    "params": run.info.get("params", {}),
                    "record_ids": tally.record_ids,
                }
            )
        normal_calls = self._tallies.get("normal", _Tally()).calls
        return {
            "generator": "tollguard simulate",
            "seed": self.seed,
            "scenarios_requested": self.scenarios,
            "format": self.fmt,
            "source": self.source,
            "record_id_form": f"{self.source}:<{'uniqueid' if self.fmt == 'asterisk' else 'uuid'}>",
            "start": self.first.isoformat(),
            "end": self.end_date.isoformat(),
            "days": self.days,
            "scale": self.scale,
            "timezone": TIMEZONE,
            "currency": "EUR",
            "total_calls": sum(t.calls for t in self._tallies.values()),
            "calls_by_scenario": {
                "normal": normal_calls,
                **{r.name: self._tallies.get(r.name, _Tally()).calls for r in self.runs},
            },
            "normal_accounts": sorted(n for n in all_accounts if n not in scenario_accounts),
            "accounts": dict(sorted(all_accounts.items())),
            "holidays": {
                d.isoformat(): n for d, n in holidays_between(self.first, self.end_date).items()
            },
            "legitimate_events": self.events.to_list(),
            "scenarios": scenarios,
        }

    def policy_toml(self) -> str:
        lines = [
            "# Policy for a tollguard simulate dataset "
            f"(seed {self.seed}, scenarios: {', '.join(self.scenarios) or 'normal'}).",
            "[defaults]",
            'country = "NL"',
            f'timezone = "{TIMEZONE}"',
            'currency = "EUR"',
            'rates = "rates.csv"',
        ]
        for run in self.runs:
            if not run.limits:
                continue
            lines += [
                "",
                f"# {run.name}: the limit the customer asked for",
                f"[accounts.{run.account}.limits]",
            ]
            lines += [f'{key} = "{value}"' for key, value in run.limits.items()]
        carriers = [DOMESTIC_IN, INTL_IN]
        for run in self.runs:
            carriers += [name for name in run.carriers if name not in carriers]
        for name in carriers:
            lines += [
                "",
                f"# {name}: a terminating trunk (its volume is not its own choice); "
                "detection blocks numbers and ranges, never the trunk",
                f"[accounts.{name}]",
                'traffic = "terminating"',
            ]
        return "\n".join(lines) + "\n"


# -- writers ------------------------------------------------------------------------------------


def _q(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def asterisk_row(call: SimCall, uid: str) -> str:
    """One Master.csv line (18 columns) the way Asterisk's cdr_csv writes it."""
    peer = call.dst_channel.rsplit("-", 1)[0]
    lastdata = f"{peer}/{call.callee},{30 if call.inbound else 60},tT"
    clid = f'"{call.clid_name}" <{call.caller}>' if call.clid_name else call.caller
    answer = "" if call.answer is None else _q(local_string(call.answer))
    billsec = 0 if call.answer is None else call.end - call.answer
    return ",".join(
        (
            _q(call.account),
            _q(call.caller),
            _q(call.callee),
            _q(call.context),
            _q(clid),
            _q(call.channel),
            _q(call.dst_channel),
            '"Dial"',
            _q(lastdata),
            _q(local_string(call.start)),
            answer,
            _q(local_string(call.end)),
            str(call.end - call.start),
            str(billsec),
            _q(ASTERISK_DISPOSITION[call.disposition]),
            '"DOCUMENTATION"',
            _q(uid),
            '""',
        )
    )


def freeswitch_row(call: SimCall, uid: str, bleg: str) -> list[str]:
    """One mod_cdr_csv ``example`` template row (15 columns)."""
    answered = call.answer is not None
    return [
        call.clid_name,
        call.caller,
        call.callee,
        "public" if call.inbound else "default",
        local_string(call.start),
        local_string(call.answer) if call.answer is not None else "",
        local_string(call.end),
        str(call.end - call.start),
        str(0 if call.answer is None else call.end - call.answer),
        FREESWITCH_CAUSE[call.disposition],
        uid,
        bleg,
        call.account,
        "PCMA" if answered else "",
        "PCMA" if answered else "",
    ]


@dataclass
class SimulationResult:
    out_dir: Path
    files: dict[str, Path]
    scenarios: list[str]
    calls: int
    calls_by_scenario: dict[str, int]
    fraud_cost_estimate: dict[str, str]
    truth: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "files": {k: str(v) for k, v in self.files.items()},
            "scenarios": self.scenarios,
            "calls": self.calls,
            "calls_by_scenario": self.calls_by_scenario,
            "fraud_cost_estimate_eur": self.fraud_cost_estimate,
            "normal_accounts": len(self.truth["normal_accounts"]),
        }


def simulate(
    out_dir: Path,
    scenarios: list[str],
    days: int = 30,
    seed: int = 1,
    accounts: int = 40,
    fmt: str = "asterisk",
    start: date | None = None,
    scale: float = 1.0,
    *,
    progress: Callable[[int], None] | None = None,
    batch: int = 20_000,
) -> SimulationResult:
    """Write Master.csv, rates.csv, policy.toml and truth.json into ``out_dir``.

    ``progress`` is called with the number of records written since the last call.
    """
    sim = Simulation(
        scenarios, days=days, seed=seed, accounts=accounts, fmt=fmt, start=start, scale=scale
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cdr_path = out_dir / CDR_FILE
    bleg_rng = sim._rng("bleg")
    with cdr_path.open("w", newline="", encoding="utf-8") as fh:
        if fmt == "asterisk":
            lines: list[str] = []
            for call in sim.calls():
                lines.append(asterisk_row(call, call.uid))
                if len(lines) >= batch:
                    fh.write("\n".join(lines) + "\n")
                    if progress:
                        progress(len(lines))
                    lines.clear()
            if lines:
                fh.write("\n".join(lines) + "\n")
                if progress:
                    progress(len(lines))
        else:
            writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
            rows: list[list[str]] = []
            for call in sim.calls():
                bleg = (
                    str(uuid.UUID(int=bleg_rng.getrandbits(128), version=4))
                    if call.answer is not None
                    else ""
                )
                rows.append(freeswitch_row(call, call.uid, bleg))
                if len(rows) >= batch:
                    writer.writerows(rows)
                    if progress:
                        progress(len(rows))
                    rows.clear()
            if rows:
                writer.writerows(rows)
                if progress:
                    progress(len(rows))
    rates_path = out_dir / "rates.csv"
    write_rates(rates_path)
    policy_path = out_dir / "policy.toml"
    policy_path.write_text(sim.policy_toml(), encoding="utf-8")
    truth = sim.truth()
    truth["files"] = {"cdr": CDR_FILE, "rates": "rates.csv", "policy": "policy.toml"}
    truth_path = out_dir / "truth.json"
    truth_path.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return SimulationResult(
        out_dir=out_dir,
        files={"cdr": cdr_path, "rates": rates_path, "policy": policy_path, "truth": truth_path},
        scenarios=sim.scenarios,
        calls=truth["total_calls"],
        calls_by_scenario=truth["calls_by_scenario"],
        fraud_cost_estimate={s["scenario"]: s["cost_estimate"] for s in truth["scenarios"]},
        truth=truth,
    )


def generate_calls(
    scenarios: list[str],
    days: int = 30,
    seed: int = 1,
    accounts: int = 40,
    fmt: str = "asterisk",
    start: date | None = None,
    scale: float = 1.0,
) -> Iterator[CallRecord]:
    """The dataset ``simulate`` would write, as CallRecords in end order, without files."""
    return Simulation(
        scenarios, days=days, seed=seed, accounts=accounts, fmt=fmt, start=start, scale=scale
    ).records()
