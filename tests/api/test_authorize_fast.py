"""POST /v1/authorize is answered by the Guard (fast path); the FastAPI route that
documents it gives the same answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tollguard.api.app import create_app
from tollguard.api.auth import Keyring
from tollguard.limits.memory import MemoryState
from tollguard.limits.service import AuthorizeService
from tollguard.policy import load_policy

from .conftest import DATA, auth

AT = "2024-06-03T12:00:00+02:00"
JSON = {"Content-Type": "application/json"}


def _app(keys_file: Path) -> TestClient:
    service = AuthorizeService(load_policy(DATA / "policy.toml"), MemoryState())
    return TestClient(create_app(service, Keyring.load(keys_file), sweep_interval_s=0))


def test_fast_path_and_route_answer_alike(keys_file: Path) -> None:
    fast, routed = _app(keys_file), _app(keys_file)
    # without the Guard's fast route: FastAPI's route answers
    (guard,) = routed.app.user_middleware  # type: ignore[attr-defined]
    guard.kwargs["fast"].clear()
    plain = routed
    for n, callee in enumerate(["0201234567", "00670771234567", "0612345678", "0201234567"]):
        body = {"account": "small", "caller": "1", "callee": callee, "call_id": f"f{n % 3}",
                "at": AT}  # fmt: skip
        a = fast.post("/v1/authorize", json=body, headers=auth("switch"))
        b = plain.post("/v1/authorize", json=body, headers=auth("switch"))
        assert (a.status_code, a.headers["content-type"]) == (200, "application/json")
        assert (b.status_code, b.headers["content-type"]) == (200, "application/json")
        assert a.content == b.content


def test_fast_path_headers_and_problems(keys_file: Path) -> None:
    c = _app(keys_file)
    body = {"account": "acme", "caller": "1", "callee": "0201234567", "call_id": "h1", "at": AT}
    # X-API-Key works like the bearer token; a wrong one is 401 even with a good bearer
    key = auth("switch")["Authorization"][7:]
    assert c.post("/v1/authorize", json=body, headers={"X-API-Key": key}).status_code == 200
    bad = c.post("/v1/authorize", json=body, headers={"X-API-Key": "nope", **auth("switch")})
    assert bad.status_code == 401 and bad.headers["content-type"] == "application/problem+json"
    r = c.post("/v1/authorize", json=body, headers=auth("analyst"))
    assert r.status_code == 403 and r.json()["instance"] == "/v1/authorize"
    r = c.post("/v1/authorize", content=b"{", headers=auth("switch"))
    assert r.status_code == 400
    # metrics still see the fast path
    assert 'route="/v1/authorize"' in c.get("/metrics").text


def test_call_events_from_the_guard_answer_like_the_routes(keys_file: Path) -> None:
    """answer and end are answered by the Guard too: same bodies, statuses and problems."""
    fast, plain = _app(keys_file), _app(keys_file)
    (guard,) = plain.app.user_middleware  # type: ignore[attr-defined]
    guard.kwargs["fast"].clear()
    steps: list[tuple[str, dict[str, Any]]] = [
        ("/v1/authorize", {"json": {"account": "small", "caller": "1", "callee": "0201234567",
                                    "call_id": "e1", "at": AT}}),
        ("/v1/calls/e1/answer", {"json": {"at": "2024-06-03T12:00:05+02:00"}}),
        ("/v1/calls/e1/answer", {}),  # no body: the defaults
        ("/v1/calls/e1/end", {"json": {"billsec": 61}}),
        ("/v1/calls/e1/end", {"json": {"billsec": 61}}),  # already ended
        ("/v1/calls/nope/end", {"json": {"billsec": 1}}),  # unknown call: 404
        ("/v1/calls/e1/end", {"content": b"{", "headers": JSON}),  # malformed: 400
        ("/v1/calls/e1/answer", {"content": b"null", "headers": JSON}),  # null: defaults
        ("/v1/calls/e1/end", {"json": {"billsec": -1}}),  # out of range: 422
        ("/v1/calls/e1/end", {"json": {"bilsec": 1}}),  # unknown field: 422
        ("/v1/calls/e1/answer", {"json": {"at": "2024-06-03T12:00:05"}}),  # no offset: 422
        ("/v1/calls/a/b/end", {"json": {}}),  # not a call event path: the router's 404
    ]  # fmt: skip
    for path, kwargs in steps:
        headers = {**auth("switch"), **kwargs.pop("headers", {})}
        a = fast.post(path, headers=headers, **kwargs)
        b = plain.post(path, headers=headers, **kwargs)
        assert (a.status_code, a.headers["content-type"], a.content) == (
            b.status_code,
            b.headers["content-type"],
            b.content,
        ), path
    assert fast.post("/v1/calls/e1/end", headers=auth("analyst")).status_code == 403
    assert fast.post("/v1/calls/e1/end", headers={"X-API-Key": "nope"}).status_code == 401
    assert 'route="/v1/calls/{call_id}/end"' in fast.get("/metrics").text


def test_the_start_up_heap_is_kept_out_of_full_collections(keys_file: Path) -> None:
    """A full collection walking the start-up heap paused every request for ~50 ms."""
    import gc

    with _app(keys_file) as client:  # runs the lifespan
        assert gc.get_freeze_count() > 0
        assert client.get("/health").status_code == 200
    assert gc.get_freeze_count() == 0  # given back at shutdown
