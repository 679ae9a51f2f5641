"""The dashboard over a simulated fortnight: login and roles, CSRF, pages and figures
against the scan's totals and the records, limit and block changes seen by authorize."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, date, datetime, timedelta

import polars as pl

from tests.web.demodata import HACKED, Demo, csrf_of, login, money2
from tollguard.web.users import UserStore, verify_password


def cell(html: str, account: str, cls: str) -> str:
    row = re.search(rf'<tr data-account="{re.escape(account)}"[^>]*>(.*?)</tr>', html, re.S)
    assert row is not None, f"no row for {account}"
    found = re.search(rf'class="num {cls}">([^<]*)<', row.group(1))
    assert found is not None
    return found.group(1).strip()


def normal_accounts(demo: Demo) -> list[str]:
    """Simulated businesses without fraud, alerts or cases (their own pick per test)."""
    busy = {c.account for c in demo.cases.list_cases(limit=1000)}
    return sorted(a for a in demo.result.accounts if a != HACKED and a not in busy)


# -- login, sessions, roles ----------------------------------------------------------
def test_pages_need_login_and_wrong_password_fails(demo: Demo) -> None:
    client = demo.client()
    for path in ("/", f"/accounts/{HACKED}", "/cases", "/rates"):
        resp = client.get(path, follow_redirects=False)
        assert resp.status_code == 303
        assert resp.headers["location"].startswith("/login?next=")
    bad = login(client, "admin", "not-the-password")
    assert bad.status_code == 401
    assert "Wrong user name or password" in bad.text
    assert login(client, "nobody", "x").status_code == 401


def test_users_file_holds_scrypt_hashes_only(demo: Demo) -> None:
    text = demo.store.users_file.read_text()
    store = UserStore.load(demo.store.users_file)
    for name, password, _ in demo.store.logins:
        assert password not in text
        assert store.users[name].password.startswith("scrypt$")
        assert verify_password(password, store.users[name].password)
        assert not verify_password(password + "x", store.users[name].password)


def test_session_cookie_is_httponly_samesite_and_opaque(demo: Demo) -> None:
    client = demo.client()
    resp = login(client, "admin", demo.password("admin"))
    assert resp.status_code == 303
    cookie = next(
        v for k, v in resp.headers.multi_items() if k == "set-cookie" and "tg_session" in v
    )
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    sid = cookie.split("=", 1)[1].split(";", 1)[0]
    assert len(sid) >= 40 and "admin" not in sid
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # logout ends the session on the server: the old cookie no longer works
    client.post("/logout", data={"csrf": csrf_of(page.text)})
    replay = demo.client()
    replay.cookies.set("tg_session", sid)
    assert replay.get("/", follow_redirects=False).status_code == 303


def test_customer_sees_only_its_own_accounts(demo: Demo) -> None:
    client = demo.client(HACKED)  # the demo's customer login
    overview = client.get("/")
    assert overview.status_code == 200
    accounts = set(re.findall(r'<tr data-account="([^"]+)"', overview.text))
    assert accounts == {HACKED}
    other = next(a for a in demo.result.accounts if a != HACKED)
    denied = client.get(f"/accounts/{other}")
    assert denied.status_code == 403
    assert other in denied.text
    assert client.get(f"/accounts/{HACKED}").status_code == 200
    cases = client.get("/cases?status=all").text
    listed = re.findall(r'<tr data-case="([^"]+)"', cases)
    own = {c.id for c in demo.cases.list_cases(limit=1000) if c.account == HACKED}
    assert set(listed) == own
    foreign = next(c for c in demo.cases.list_cases(limit=1000) if c.account != HACKED)
    assert client.get(f"/cases/{foreign.id}").status_code == 403
    # read-only: no block, no limits, no case work
    page = client.get(f"/accounts/{HACKED}").text
    assert 'id="block-form"' not in page and 'id="unblock-form"' not in page
    assert 'id="limits-form"' not in page
    token = csrf_of(page)
    assert client.post(f"/accounts/{HACKED}/unblock", data={"csrf": token}).status_code == 403
    assert client.post(f"/accounts/{HACKED}/limits", data={"csrf": token}).status_code == 403


def test_csrf_token_required_on_every_post(demo: Demo) -> None:
    account = normal_accounts(demo)[1]
    client = demo.client("admin")
    assert client.post(f"/accounts/{account}/block", data={"reason": "x"}).status_code == 403
    wrong = client.post(f"/accounts/{account}/block", data={"reason": "x", "csrf": "forged"})
    assert wrong.status_code == 403
    assert "CSRF" in wrong.text
    assert demo.service.state.get_block(account) is None
    # another session's token does not work either
    other = demo.client("analyst")
    token = csrf_of(other.get("/").text)
    assert client.post(f"/accounts/{account}/block", data={"csrf": token}).status_code == 403
    assert demo.service.state.get_block(account) is None
    # the login form: a token bound to the pre-login cookie
    fresh = demo.client()
    fresh.get("/login")
    resp = fresh.post("/login", data={"username": "admin", "password": demo.password("admin")})
    assert resp.status_code == 403
    # not logged in: POST refused, nothing changes
    assert demo.client().post(f"/accounts/{account}/block", data={}).status_code == 403


# -- pages and figures -------------------------------------------------------------
def test_overview_figures_equal_scan_totals(demo: Demo) -> None:
    last = demo.rated.get_column("lday").max()
    assert isinstance(last, date)
    client = demo.client("admin")
    html = client.get(f"/?day={last}").text
    assert "Looking back" in html
    # the fortnight is inside one month: month-to-date at the last day = the scan's total
    for account in (HACKED, "ix-kpn", "prs-carrier", "kapper-schouten"):
        if account not in demo.result.accounts:
            continue
        expected = money2(demo.result.accounts[account].cost_e4)
        assert cell(html, account, "spend-month") == expected, account
        day_e4 = int(
            demo.rated.filter((pl.col("account") == account) & (pl.col("lday") == last))
            .get_column("cost_e4")
            .sum()
        )
        assert cell(html, account, "spend-today") == money2(day_e4)
    open_cases = demo.cases.list_cases(status=["open"], limit=1000)
    assert f'id="open-cases">{len(open_cases)}<' in html
    critical = sum(1 for c in open_cases if c.severity == "critical")
    assert f'id="open-critical">{critical} critical<' in html
    assert 'id="quarantined-open">0<' in html
    assert f"{demo.result.records:,}" in html  # records per source


def test_account_page_chart_limits_and_destinations(demo: Demo) -> None:
    day = demo.hack_day
    client = demo.client("analyst")
    html = client.get(f"/accounts/{HACKED}?day={day}").text
    assert 'id="tz">Europe/Amsterdam<' in html
    assert '<svg id="chart-calls"' in html and '<svg id="chart-cost"' in html
    bars = re.findall(r'<rect class="bar[^"]*" data-slot="(\d+)" data-value="([^"]+)"', html)
    assert bars, "no bars"
    # the hour-of-week bars of the hack day add up to the day's calls
    weekday = day.weekday()
    frame = demo.rated.filter((pl.col("account") == HACKED) & (pl.col("lday") == day))
    calls_chart = re.search(r'<svg id="chart-calls".*?</svg>', html, re.S)
    assert calls_chart is not None
    day_bars = [
        int(v)
        for s, v in re.findall(r'data-slot="(\d+)" data-value="([^"]+)"', calls_chart.group(0))
        if weekday * 24 <= int(s) < weekday * 24 + 24
    ]
    assert sum(day_bars) == frame.height
    # the data start on a Thursday: the hack's week has no full week before it
    assert "normal (no history)" in calls_chart.group(0)
    later = client.get(f"/accounts/{HACKED}?day={day + timedelta(days=7)}").text
    chart = re.search(r'<svg id="chart-calls".*?</svg>', later, re.S)
    assert chart is not None
    assert "normal (1 wk)" in chart.group(0) and '<polyline class="normal"' in chart.group(0)
    cost_e4 = int(frame.get_column("cost_e4").sum())
    assert f'id="spend-today">EUR {money2(cost_e4)}<' in html
    assert 'data-limit="max_spend_per_day"' in html and "500.00" in html
    # destinations by cost: Timor-Leste first
    dest = re.search(
        r'id="destinations".*?<tbody>\s*<tr><td>([^<]*)</td><td>([A-Z?]+)</td>', html, re.S
    )
    assert dest is not None and dest.group(2) == "TL"
    assert "Recent alerts" in html and "destination" in html


def test_case_page_shows_explanations_records_and_exports(demo: Demo) -> None:
    case = next(
        c for c in demo.cases.list_cases(account=HACKED, limit=50) if c.severity == "critical"
    )
    client = demo.client("analyst")
    html = client.get(f"/cases/{case.id}").text
    detail = demo.cases.get(case.id, detail=True)
    for alert in detail.alerts:
        why = alert["explanation"].get("why", "")
        if why:
            assert why.replace("&", "&amp;").replace("'", "&#39;")[:40] in html
    from tollguard.cases.records import load_rated_db
    from tollguard.reports.evidence import select_case_records

    rated = load_rated_db(demo.cases.engine)
    assert rated is not None
    records = select_case_records(rated, case, demo.cases.case_alerts(case.id))
    assert f'id="case-records">{records.height:,}<' in html
    total = int(records.get_column("cost_e4").sum())
    assert f'id="case-cost">EUR {total // 10000}.{total % 10000:04d}<' in html
    assert "Timeline" in html and "first fraudulent record" in html
    # export: a zip with the records and checksums
    resp = client.get(f"/cases/{case.id}/evidence.zip")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(resp.content)).namelist()
    assert f"{case.id}/records.csv" in names and f"{case.id}/SHA256SUMS" in names


def test_case_workflow_from_the_page(demo: Demo) -> None:
    case = next(c for c in demo.cases.list_cases(status=["new"], limit=100) if c.account != HACKED)
    client = demo.client("analyst")
    page = client.get(f"/cases/{case.id}").text
    assert 'id="verb-ack"' in page
    token = csrf_of(page)
    resp = client.post(
        f"/cases/{case.id}/workflow", data={"csrf": token, "verb": "ack", "note": "looking"}
    )
    assert resp.status_code == 200  # redirected back to the case
    assert demo.cases.get(case.id).status == "acknowledged"
    client.post(f"/cases/{case.id}/workflow", data={"csrf": token, "verb": "false_positive"})
    client.post(f"/cases/{case.id}/workflow", data={"csrf": token, "verb": "close"})
    after = demo.cases.get(case.id, detail=True)
    assert after.status == "closed"
    assert [e.actor for e in after.events if e.kind == "ack"] == ["web:analyst"]
    # an impossible step is refused with the reason
    bad = client.post(f"/cases/{case.id}/workflow", data={"csrf": token, "verb": "ack"})
    assert bad.status_code == 409


def test_rates_lookup(demo: Demo) -> None:
    client = demo.client("admin")
    html = client.get("/rates", params={"number": "0067077123456", "account": HACKED}).text
    assert 'id="e164">+67077123456<' in html
    assert 'id="country">TL<' in html
    plan = demo.service.plan(HACKED)
    row = demo.service.rates.lookup(plan.deck, "+67077123456", datetime.now(UTC))
    assert row is not None
    assert f"{row.currency} {row.rate_per_minute} per minute" in html
    assert 'id="risk"><span class="sev critical">' in html  # Timor-Leste is on the risk list
    assert 'id="decks"' in html and plan.deck.name in html


# -- changes through the page reach authorize -----------------------------------------
def test_limit_edit_changes_authorize_decisions(demo: Demo) -> None:
    account = normal_accounts(demo)[0]
    callee = "0067077123456"  # Timor-Leste mobile
    before = demo.service.authorize(account, "0201234567", callee, "web-lim-1")
    assert before.decision == "allow"
    admin = demo.client("admin")
    page = admin.get(f"/accounts/{account}").text
    form = {"csrf": csrf_of(page), "blocked_countries": "TL, SO", "max_spend_per_day": "25.50"}
    resp = admin.post(f"/accounts/{account}/limits", data=form)
    assert resp.status_code == 200
    after = demo.service.authorize(account, "0201234567", callee, "web-lim-2")
    assert (after.decision, after.reason) == ("deny", "country_blocked")
    assert demo.service.plan(account).limits.max_spend_per_day is not None
    shown = admin.get(f"/accounts/{account}").text
    assert re.search(r'data-limit="max_spend_per_day">.*?limit-value">25.50<', shown, re.S)
    entry = next(e for e in reversed(demo.service.state.audit(1000)) if e["action"] == "policy.put")
    assert entry["who"] == "web:admin" and entry["account"] == account
    # bad input changes nothing
    bad = admin.post(f"/accounts/{account}/limits", data={**form, "max_calls_per_day": "many"})
    assert bad.status_code == 422
    # an analyst may not edit limits
    analyst = demo.client("analyst")
    token = csrf_of(analyst.get(f"/accounts/{account}").text)
    assert analyst.post(f"/accounts/{account}/limits", data={"csrf": token}).status_code == 403
    assert demo.service.plan(account, fresh=True).limits.blocked_countries == ["TL", "SO"]


def test_block_and_unblock_from_the_page(demo: Demo) -> None:
    account = normal_accounts(demo)[-1]
    ok = demo.service.authorize(account, "0201234567", "0201234568", "web-blk-1")
    assert ok.decision == "allow"
    analyst = demo.client("analyst")
    page = analyst.get(f"/accounts/{account}").text
    assert (
        analyst.post(
            f"/accounts/{account}/block", data={"csrf": csrf_of(page), "reason": "night calls"}
        ).status_code
        == 200
    )
    denied = demo.service.authorize(account, "0201234567", "0201234568", "web-blk-2")
    assert (denied.decision, denied.reason) == ("deny", "account_blocked")
    page = analyst.get(f"/accounts/{account}").text
    assert 'id="blocked-badge"' in page and "night calls" in page
    analyst.post(f"/accounts/{account}/unblock", data={"csrf": csrf_of(page), "reason": "fixed"})
    again = demo.service.authorize(account, "0201234567", "0201234568", "web-blk-3")
    assert again.decision == "allow"
    actions = [
        (e["action"], e["who"]) for e in demo.service.state.audit(1000) if e["account"] == account
    ]
    assert ("account.block", "web:analyst") in actions and (
        "account.unblock",
        "web:analyst",
    ) in actions


def test_demo_store_has_the_blocked_account_and_the_held_payout(demo: Demo) -> None:
    assert demo.store.blocked == [HACKED]
    assert demo.service.state.get_block(HACKED) is not None
    assert demo.store.records == demo.result.records
    from tollguard.cases.payouts import PayoutLedger

    assert demo.store.holds == [] or PayoutLedger(demo.cases.engine).holds(status="held")
