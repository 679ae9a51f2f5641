"""The cases APIRouter mounted on a FastAPI app (in-process client)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tollguard.cases.api import router
from tollguard.cases.service import CaseService

from .conftest import T0, MakeAlert


def test_router(engine: Engine, make_alert: MakeAlert) -> None:
    svc = CaseService(engine)
    cid = svc.ingest(make_alert()).case.id
    app = FastAPI()
    app.include_router(router(lambda: svc), prefix="/v1")
    client = TestClient(app)
    assert [c["id"] for c in client.get("/v1/cases", params={"status": "open"}).json()] == [cid]
    at = (T0 + timedelta(minutes=15)).isoformat()
    r = client.post(f"/v1/cases/{cid}/ack", json={"actor": "ana", "at": at})
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    bad = client.post(f"/v1/cases/{cid}/close", json={"actor": "ana", "at": at})
    assert bad.status_code == 409
    assert bad.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/cases/C-nope").status_code == 404
    detail = client.get(f"/v1/cases/{cid}").json()
    assert [e["kind"] for e in detail["events"]] == ["opened", "alert", "ack"]
