"""A small simulated fortnight (normal traffic for 40 businesses + the PBX hack to
Timor-Leste), scanned with detection, loaded into a SQLite store the way `make demo`
does it. Built once per test session (about 20 s) and shared by the web and report tests."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from tollguard.commands.demo import DemoStore, build_demo_app, load_demo_store
from tollguard.policy import Policy, load_policy
from tollguard.scan import ScanOptions, ScanResult, run_scan
from tollguard.sim import simulate

HACKED = "hoek-techniek"
TZ = "Europe/Amsterdam"


@dataclass
class Demo:
    out: Path
    policy: Policy
    result: ScanResult
    truth: dict[str, Any]
    store: DemoStore
    app: Any
    service: Any
    cases: Any
    rated: pl.DataFrame  # rated.parquet with cost_e4 and local day

    @property
    def hack_day(self) -> date:
        onset = datetime.fromisoformat(self.truth["scenarios"][0]["onset"])
        return onset.date()

    def password(self, user: str) -> str:
        return next(p for name, p, _ in self.store.logins if name == user)

    def client(self, user: str | None = None) -> TestClient:
        client = TestClient(self.app)
        if user is not None:
            login(client, user, self.password(user))
        return client


def login(client: TestClient, user: str, password: str) -> Any:
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    return client.post(
        "/login",
        data={"username": user, "password": password, "csrf": token.group(1), "next": "/"},
        follow_redirects=False,
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "page has no CSRF field"
    return found.group(1)


def build_demo(base: Path) -> Demo:
    out = base / "demo"
    sim = simulate(out, ["pbx-hack"], days=14, seed=3, scale=0.01)
    policy = load_policy(sim.files["policy"])
    result = run_scan(
        [sim.files["cdr"]],
        policy,
        ScanOptions(detect=True, enforce=True, out=out / "rated.parquet"),
    )
    store = load_demo_store(out, policy, result, sim.truth)
    app, service, cases, _ = build_demo_app(store)
    rated = pl.read_parquet(out / "rated.parquet").with_columns(
        (pl.col("cost").cast(pl.Decimal(24, 4)) * 10000).cast(pl.Int64).alias("cost_e4"),
        pl.col("start").dt.convert_time_zone(TZ).dt.date().alias("lday"),
    )
    return Demo(out, policy, result, sim.truth, store, app, service, cases, rated)


_LOCK = threading.Lock()
_CACHE: dict[str, Demo] = {}


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    with _LOCK:
        if "demo" not in _CACHE:
            started = time.perf_counter()
            _CACHE["demo"] = build_demo(tmp_path_factory.mktemp("webdemo"))
            _CACHE["demo"].store.notes.append(f"built in {time.perf_counter() - started:.1f} s")
        return _CACHE["demo"]


def money2(e4: int) -> str:
    """The dashboard's money format: 2 decimals, thousands separators."""
    from decimal import Decimal

    return f"{(Decimal(e4) / 10000).quantize(Decimal('0.01')):,}"


__all__ = ["HACKED", "TZ", "Demo", "build_demo", "csrf_of", "demo", "json", "login", "money2"]
