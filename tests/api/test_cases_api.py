"""Alerts from POST /v1/cdrs become cases, readable and workable over the API."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import DATA, auth, keys_toml
from tests.api.test_api import CriticalEngine
from tollguard.api.app import create_app
from tollguard.api.auth import Keyring, hash_key
from tollguard.cases.service import CaseService
from tollguard.limits.memory import MemoryState
from tollguard.limits.service import AuthorizeService
from tollguard.policy import load_policy
from tollguard.store.engine import make_engine
from tollguard.store.migrate import upgrade


def test_cdr_alerts_open_a_case_that_analysts_can_work(tmp_path: Path, keys_file: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    upgrade(url)
    policy = load_policy(DATA / "policy.toml")
    cases = CaseService(make_engine(url), policy=policy)
    service = AuthorizeService(policy, MemoryState())
    app = create_app(
        service, Keyring.load(keys_file), sweep_interval_s=0, engine=CriticalEngine(), cases=cases
    )
    start = datetime(2024, 6, 3, 10, 0, tzinfo=UTC).isoformat()
    record = {"record_id": "r2", "account": "free", "callee": "00252612345678", "start": start,
              "billsec": 60}  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/v1/cdrs", json=[record], headers=auth("switch"))
        assert r.status_code == 200 and r.json()["alerts"], r.text
        # a switch key may feed records but not read cases
        assert client.get("/v1/cases", headers=auth("switch")).status_code == 403
        listed = client.get("/v1/cases", headers=auth("analyst"))
        assert listed.status_code == 200, listed.text
        found = listed.json()
        assert len(found) == 1 and found[0]["account"] == "free"
        shown = client.get(f"/v1/cases/{found[0]['id']}", headers=auth("analyst")).json()
        assert shown["alerts"] == 1
        assert [a["detector"] for a in shown["alert_list"]] == ["destination_risk"]
        # the same records again file no second case
        client.post("/v1/cdrs", json=[record], headers=auth("switch"))
        assert len(client.get("/v1/cases", headers=auth("analyst")).json()) == 1


def test_cases_are_scoped_to_the_key_tenant_and_record_the_key(tmp_path: Path) -> None:
    other_analyst = "oa-secret"
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(
        keys_toml() + f'\n[[keys]]\nname = "olga"\nrole = "analyst"\ntenant = "other"\n'
        f'sha256 = "{hash_key(other_analyst)}"\n'
    )
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    upgrade(url)
    policy = load_policy(DATA / "policy.toml")
    cases = CaseService(make_engine(url), policy=policy)
    app = create_app(
        AuthorizeService(policy, MemoryState()),
        Keyring.load(keys_file),
        sweep_interval_s=0,
        engine=CriticalEngine(),
        cases=cases,
    )
    start = datetime(2024, 6, 3, 10, 0, tzinfo=UTC).isoformat()
    record = {"record_id": "r9", "account": "free", "callee": "00252612345678", "start": start,
              "billsec": 60}  # fmt: skip
    olga = {"Authorization": f"Bearer {other_analyst}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/v1/cdrs", json=[record], headers=auth("switch")).json()["alerts"]
        (case,) = client.get("/v1/cases", headers=auth("analyst")).json()
        # another tenant's analyst neither lists, reads nor works the case: it does not exist
        assert client.get("/v1/cases", headers=olga).json() == []
        assert client.get(f"/v1/cases/{case['id']}", headers=olga).status_code == 404
        denied = client.post(f"/v1/cases/{case['id']}/ack", json={}, headers=olga)
        assert denied.status_code == 404
        assert denied.headers["content-type"] == "application/problem+json"
        # the key is recorded as who acted, with the person the body names
        ok = client.post(
            f"/v1/cases/{case['id']}/ack", json={"actor": "bob"}, headers=auth("analyst")
        )
        assert ok.status_code == 200 and ok.json()["status"] == "acknowledged"
        client.post(
            f"/v1/cases/{case['id']}/comment", json={"text": "PBX reset"}, headers=auth("analyst")
        )
        events = client.get(f"/v1/cases/{case['id']}", headers=auth("admin")).json()["events"]
        actors = {e["kind"]: e["actor"] for e in events}
        assert actors["ack"] == "bob (key alice)" and actors["comment"] == "alice"
