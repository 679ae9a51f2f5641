"""HTTP API: auth and tenants, problem+json for every bad input, lifecycle, admin, CDRs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient

from tollguard.detect.alert import Alert, Evidence

from .conftest import auth

AT = "2024-06-03T12:00:00+02:00"  # Monday noon in Amsterdam


def authz(client: TestClient, role: str = "switch", **over: Any) -> Any:
    body = {"account": "acme", "caller": "100", "callee": "0201234567", "call_id": "c1", "at": AT}
    body.update(over)
    return client.post("/v1/authorize", json=body, headers=auth(role))


def counters(client: TestClient, account: str = "acme") -> dict[str, Any]:
    r = client.get(f"/v1/accounts/{account}/counters", params={"at": AT}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    return body


def test_open_endpoints_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    authz(client)
    metrics = client.get("/metrics").text
    assert 'tollguard_authorize_decisions_total{decision="allow",reason="ok"} 1.0' in metrics
    assert "tollguard_http_request_seconds_bucket" in metrics
    spec = client.get("/openapi.json", headers=auth("admin")).json()
    assert "/v1/authorize" in spec["paths"]


def test_authentication_and_roles(client: TestClient) -> None:
    assert_problem(client.post("/v1/authorize", json={}), 401)
    assert_problem(client.post("/v1/authorize", json={}, headers={"X-API-Key": "nope"}), 401)
    # switch may authorize but not read or block
    assert authz(client).json()["decision"] == "allow"
    assert_problem(client.get("/v1/accounts/acme/counters", headers=auth("switch")), 403)
    assert_problem(
        client.post("/v1/accounts/acme/block", json={"reason": "x"}, headers=auth("switch")), 403
    )
    # analyst may read and block, not change policy or authorize
    assert client.get("/v1/accounts/acme", headers=auth("analyst")).status_code == 200
    assert_problem(authz(client, "analyst", call_id="c2"), 403)
    r = client.put(
        "/v1/accounts/acme/policy",
        json={"limits": {"max_calls_per_day": 1}},
        headers=auth("analyst"),
    )
    assert_problem(r, 403)


def test_tenants_see_only_their_accounts(client: TestClient) -> None:
    r = client.post(
        "/v1/authorize",
        json={"account": "acme", "caller": "1", "callee": "0201234567", "call_id": "t1", "at": AT},
        headers=auth("other"),
    )
    assert (r.status_code, r.json()["decision"], r.json()["reason"]) == (
        200,
        "deny",
        "unknown_account",
    )
    assert counters(client)["calls_day"] == 0
    authz(client, call_id="t2")
    assert_problem(client.post("/v1/calls/t2/end", json={"billsec": 1}, headers=auth("other")), 404)


def test_unknown_account_is_a_deny_not_an_error(client: TestClient) -> None:
    r = authz(client, account="nobody")
    assert r.status_code == 200
    assert (r.json()["decision"], r.json()["reason"]) == ("deny", "unknown_account")


def test_bad_input_is_problem_json_and_changes_nothing(client: TestClient) -> None:
    good = {"account": "acme", "caller": "100", "callee": "0201234567", "call_id": "b1", "at": AT}
    bad_bodies: list[tuple[Any, int]] = [
        ({**good, "callee": "06-ABC"}, 422),  # malformed number
        ({**good, "callee": "+" + "1" * 40}, 422),
        ({**good, "callee": ""}, 422),
        ({k: v for k, v in good.items() if k != "callee"}, 422),  # missing field
        ({k: v for k, v in good.items() if k != "call_id"}, 422),
        ({**good, "callee": 31201234567}, 422),  # wrong type
        ({**good, "account": ["acme"]}, 422),
        ({**good, "at": "yesterday"}, 422),
        ({**good, "at": "2024-06-03T12:00:00"}, 422),  # no offset: ambiguous
        ({**good, "surprise": 1}, 422),
        ([good], 422),
    ]
    for body, status in bad_bodies:
        p = assert_problem(client.post("/v1/authorize", json=body, headers=auth("switch")), status)
        assert p["type"].startswith("urn:tollguard:problem:")
    raw = [b"{not json", b"", b"\xff\xfe"]
    for data in raw:
        r = client.post(
            "/v1/authorize",
            content=data,
            headers={**auth("switch"), "content-type": "application/json"},
        )
        assert r.status_code in (400, 422)
        assert_problem(r, r.status_code)
    huge = b'{"account": "' + b"a" * 100_000 + b'"}'
    r = client.post(
        "/v1/authorize",
        content=huge,
        headers={**auth("switch"), "content-type": "application/json"},
    )
    assert_problem(r, 413)
    assert_problem(
        client.post("/v1/calls/nope/end", json={"billsec": 3}, headers=auth("switch")), 404
    )
    assert_problem(client.post("/v1/calls/nope/answer", headers=auth("switch")), 404)
    assert_problem(client.get("/v1/nothing", headers=auth("admin")), 404)
    assert_problem(client.get("/v1/authorize", headers=auth("admin")), 405)
    assert_problem(client.get("/v1/accounts/nobody/counters", headers=auth("admin")), 404)
    assert_problem(client.delete("/v1/accounts/acme/counters/bogus", headers=auth("admin")), 404)
    assert_problem(
        client.put("/v1/accounts/acme/policy", json={"limits": {"max_calls_per_day": -1}},
                   headers=auth("admin")), 422,
    )  # fmt: skip
    assert_problem(
        client.post("/v1/calls/b1/end", json={"billsec": "long"}, headers=auth("switch")), 422
    )
    c = counters(client)
    assert c["calls_day"] == 0 and c["concurrent"] == 0
    assert c["spend_day"] == {"spent": "0.0000", "reserved": "0.0000"}


def test_call_lifecycle_over_http(client: TestClient) -> None:
    r = authz(client, account="small", callee="0612345678", call_id="L1")
    d = r.json()
    assert (d["decision"], d["max_duration_s"], d["rate"]["prefix"]) == ("allow", 600, "316")
    assert {x["name"] for x in d["limits"]} >= {"max_spend_per_day", "max_calls_per_day"}
    assert counters(client, "small")["concurrent"] == 1
    r = client.post("/v1/calls/L1/answer", json={"at": AT}, headers=auth("switch"))
    assert r.json()["state"] == "answered"
    r = client.post(
        "/v1/calls/L1/end", json={"at": "2024-06-03T12:01:30+02:00"}, headers=auth("switch")
    )
    assert (r.json()["status"], r.json()["cost"]) == ("ended", "0.1000")  # 90 s -> 2 min
    c = counters(client, "small")
    assert c["spend_day"] == {"spent": "0.1000", "reserved": "0.0000"} and c["concurrent"] == 0
    r = client.post("/v1/calls/L1/end", json={"billsec": 5}, headers=auth("switch"))
    assert r.json()["status"] == "already_ended"


def test_daily_cap_and_blocked_country_over_http(client: TestClient) -> None:
    for i in range(2):
        assert authz(client, account="calls-only", call_id=f"d{i}").json()["decision"] == "allow"
        client.post(f"/v1/calls/d{i}/end", json={"billsec": 0}, headers=auth("switch"))
    r = authz(client, account="calls-only", call_id="d2").json()
    assert (r["decision"], r["reason"]) == ("deny", "calls_per_day")
    r = authz(client, callee="00670771234567", call_id="tl").json()
    assert (r["decision"], r["reason"]) == ("deny", "country_blocked")


def test_admin_policy_block_reset_and_audit(client: TestClient) -> None:
    r = client.post(
        "/v1/accounts/free/block", json={"reason": "PBX hacked"}, headers=auth("analyst")
    )
    assert r.json()["blocked"]["by"] == "alice"
    assert authz(client, account="free", call_id="f1").json()["reason"] == "account_blocked"
    client.post("/v1/accounts/free/unblock", json={"reason": "fixed PIN"}, headers=auth("analyst"))
    assert authz(client, account="free", call_id="f2").json()["decision"] == "allow"
    r = client.put(
        "/v1/accounts/free/policy",
        json={
            "limits": {"max_calls_per_day": 1, "blocked_countries": ["SO"]},
            "report_only": False,
        },
        headers=auth("admin"),
    )
    assert r.status_code == 200 and r.json()["limits"]["max_calls_per_day"] == 1
    assert authz(client, account="free", call_id="f3").json()["reason"] == "calls_per_day"
    r = client.delete(
        "/v1/accounts/free/counters/calls_day", params={"at": AT}, headers=auth("admin")
    )
    assert r.status_code == 200
    assert authz(client, account="free", call_id="f4").json()["decision"] == "allow"
    entries = client.get("/v1/audit", headers=auth("analyst")).json()["entries"]
    assert [(e["action"], e["who"]) for e in entries] == [
        ("counter.reset", "root"),
        ("policy.put", "root"),
        ("account.unblock", "alice"),
        ("account.block", "alice"),
    ]
    assert all(e["at"] for e in entries)
    assert entries[1]["detail"]["after"]["limits"]["max_calls_per_day"] == 1


class CriticalEngine:
    """Stands in for the detection engine: one critical alert per record to Somalia."""

    def process(self, record: Any) -> list[Alert]:
        if record.country != "SO":
            return []
        return [
            Alert(
                id=f"a-{record.record_id}", detector="destination_risk", severity="critical",
                account=record.account, subject="SO", subject_kind="country",
                started_at=record.start, detected_at=record.end, records=1,
                cost=record.cost or Decimal(0), currency="EUR",
                explanation={"why": "calls to Somalia"}, evidence=Evidence([record.record_id], 1),
            )
        ]  # fmt: skip


def test_cdrs_feed_engine_and_critical_alert_blocks(make_client: Any) -> None:
    client: TestClient = make_client(engine=CriticalEngine())
    client.put(
        "/v1/accounts/free/policy",
        json={"limits": {}, "on_critical": "block"},
        headers=auth("admin"),
    )
    start = datetime(2024, 6, 3, 10, 0, tzinfo=UTC).isoformat()
    records = [
        {
            "record_id": "r1",
            "account": "free",
            "callee": "0201234567",
            "start": start,
            "billsec": 60,
        },
        {
            "record_id": "r2",
            "account": "free",
            "callee": "00252612345678",
            "start": start,
            "billsec": 60,
        },
        {"record_id": "r3", "account": "other-1", "callee": "0201234567", "start": start},
    ]
    r = client.post("/v1/cdrs", json=records, headers=auth("switch"))
    body = r.json()
    assert (body["accepted"], body["blocked"]) == (2, ["free"])
    assert body["rejected"] == [{"record_id": "r3", "reason": "unknown_account"}]
    assert body["alerts"][0]["severity"] == "critical"
    assert authz(client, account="free", call_id="x").json()["reason"] == "account_blocked"
    assert_problem(client.post("/v1/cdrs", json=[{"account": "free"}], headers=auth("switch")), 422)
    r = client.post(
        "/v1/cdrs", content=b"x", headers={**auth("switch"), "content-type": "image/png"}
    )
    assert_problem(r, 415)


def test_cdrs_with_the_real_engine_do_not_fail(client: TestClient) -> None:
    start = datetime(2024, 6, 3, 10, 0, tzinfo=UTC).isoformat()
    recs = [{"account": "acme", "callee": "0201234567", "start": start, "billsec": 30}]
    r = client.post("/v1/cdrs", json=recs, headers=auth("switch"))
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
