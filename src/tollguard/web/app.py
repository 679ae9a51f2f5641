"""The dashboard: server-rendered pages over the authorize service, the store and cases.

Mounted into ``tollguard serve`` with ``create_app(..., web=Dashboard(...).router)``.
Pages need a login (users file, see ``tollguard.web.users``); every POST carries the
session's CSRF token. Changes (limits, block, case workflow) go through the same
services as the API, so the authorize path sees them at once, and are audited.
"""

from __future__ import annotations

import mimetypes
import tempfile
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from sqlalchemy import Engine
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tollguard.cdr.model import cost_from_e4
from tollguard.limits.service import AuthorizeService
from tollguard.policy import Limits
from tollguard.reports.daily import Bucket, bucket_of, load_db, with_local
from tollguard.web import queries as q
from tollguard.web.sessions import COOKIE, PRE_COOKIE, Session, SessionStore, same_token
from tollguard.web.svg import bar_line_chart, meter
from tollguard.web.users import User, UserStore

HERE = Path(__file__).parent
STATIC = HERE / "static"
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
LIVE_WINDOW = timedelta(days=1)  # records newer than this: the clock is "now"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
LIMIT_FIELDS = (
    ("max_spend_per_hour", "money"),
    ("max_spend_per_day", "money"),
    ("max_spend_per_month", "money"),
    ("max_calls_per_minute", "int"),
    ("max_calls_per_day", "int"),
    ("max_concurrent_calls", "int"),
    ("max_call_duration_s", "int"),
    ("blocked_countries", "list"),
    ("blocked_number_types", "list"),
)
CASE_VERBS = {"ack": "ack", "confirm": "confirm", "false_positive": "false_positive",
              "close": "close"}  # fmt: skip


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Ctx:
    user: User
    session: Session


def _money(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        v = cost_from_e4(v)
    d = Decimal(v).quantize(Decimal("0.01"))
    return f"{d:,}"


class Dashboard:
    def __init__(
        self,
        service: AuthorizeService,
        users: UserStore,
        *,
        engine: Engine | None = None,
        cases: Any = None,
        secure_cookies: bool = False,
        clock: Callable[[], datetime] | None = None,
        session_ttl_s: float = 8 * 3600,
    ) -> None:
        self.service = service
        self.users = users
        self.engine = engine if engine is not None else getattr(cases, "engine", None)
        self.cases = cases
        self.secure = secure_cookies
        self.clock = clock
        self.sessions = SessionStore(session_ttl_s)
        self._latest: tuple[float, datetime | None] = (0.0, None)
        self._ingest: tuple[float, q.IngestStatus | None] = (0.0, None)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["money"] = _money
        self.env.filters["lt"] = self._local
        self.env.globals["meter"] = meter
        self.router = self._routes()

    # -- helpers ----------------------------------------------------------------
    @property
    def policy(self) -> Any:
        return self.service.policy

    def as_of(self, request: Request | None = None, tz: str = "UTC") -> tuple[datetime, bool]:
        """The dashboard's "now" and whether it is the wall clock (else: the latest
        record, for a store holding a replay or last month's data). ``?day=YYYY-MM-DD``
        looks back: the end of that local day (in ``tz``), at most the latest data."""
        day = request.query_params.get("day", "") if request is not None else ""
        if day:
            try:
                wanted = date.fromisoformat(day)
            except ValueError:
                raise Denied(422, f"day {day!r}: give YYYY-MM-DD") from None
            end = q.local_midnight(wanted + timedelta(days=1), tz) - timedelta(microseconds=1)
            now, live = self.as_of(None, tz)
            return (end, False) if end < now else (now, live)
        if self.clock is not None:
            return self.clock(), False
        wall = datetime.now(UTC)
        if not q.has_records(self.engine):
            return wall, True
        stamp, latest = self._latest
        if _time.monotonic() - stamp > 5:
            assert self.engine is not None
            latest = q.latest_start(self.engine)
            self._latest = (_time.monotonic(), latest)
        if latest is None or wall - latest < LIVE_WINDOW:
            return wall, True
        return latest, False

    @staticmethod
    def _local(value: datetime | str | None, tz: str, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
        if value is None:
            return "-"
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(ZoneInfo(tz)).strftime(fmt)

    def tz_of(self, account: str) -> str:
        return str(self.policy.account(account).timezone)

    def accounts(self, user: User) -> list[str]:
        names = set(self.policy.accounts) | set(q.known_accounts(self.engine))
        return sorted(a for a in names if a and user.sees(a))

    def render(
        self, request: Request, name: str, ctx: Ctx | None, code: int = 200, **data: Any
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(
            user=ctx.user if ctx else None,
            csrf=ctx.session.csrf if ctx else "",
            path=request.url.path,
            **data,
        )
        return HTMLResponse(html, status_code=code, headers=SECURITY_HEADERS)

    def error(self, request: Request, ctx: Ctx | None, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", ctx, status, status=status, message=message)

    def ctx(self, request: Request) -> Ctx | None:
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            return None
        user = self.users.get(session.user)
        if user is None:
            return None
        return Ctx(user, session)

    def login_redirect(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    async def posted(self, request: Request, ctx: Ctx) -> dict[str, str]:
        form = await request.form()
        data = {k: v for k, v in form.items() if isinstance(v, str)}
        if not same_token(ctx.session.csrf, data.get("csrf")):
            raise Denied(403, "the form's CSRF token is missing or wrong; reload the page")
        return data

    def need_account(self, ctx: Ctx, account: str) -> None:
        if not ctx.user.sees(account):
            raise Denied(403, f"user {ctx.user.name!r} may not see account {account!r}")
        if account not in self.policy.accounts and account not in q.known_accounts(self.engine):
            raise Denied(404, f"no account {account!r}")

    # -- routes -----------------------------------------------------------------
    def _routes(self) -> APIRouter:
        r = APIRouter(include_in_schema=False)
        page = self._page

        @r.get("/static/{name}")
        async def static(name: str) -> Response:
            path = STATIC / name
            if "/" in name or name.startswith(".") or not path.is_file():
                return Response(b"not found", status_code=404, media_type="text/plain")
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return Response(path.read_bytes(), media_type=ctype,
                            headers={"cache-control": "max-age=3600"})  # fmt: skip

        @r.get("/login")
        async def login_form(request: Request, next: str = "/") -> Response:
            import secrets

            pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)
            resp = self.render(request, "login.html", None, token=self.sessions.login_token(pre),
                               next=_safe_next(next), failed=False)  # fmt: skip
            resp.set_cookie(PRE_COOKIE, pre, httponly=True, samesite="lax", secure=self.secure,
                            max_age=3600)  # fmt: skip
            return resp

        @r.post("/login")
        async def login(request: Request) -> Response:
            form = await request.form()
            data = {k: v for k, v in form.items() if isinstance(v, str)}
            pre = request.cookies.get(PRE_COOKIE)
            if not self.sessions.check_login_token(pre, data.get("csrf")):
                return self.error(request, None, 403, "the login form's CSRF token is missing "
                                  "or wrong; reload the login page")  # fmt: skip
            user = self.users.authenticate(data.get("username", ""), data.get("password", ""))
            nxt = _safe_next(data.get("next", "/"))
            if user is None:
                return self.render(request, "login.html", None, 401,
                                   token=self.sessions.login_token(pre or ""), next=nxt,
                                   failed=True)  # fmt: skip
            session = self.sessions.create(user.name)
            resp = RedirectResponse(nxt, status_code=303)
            resp.set_cookie(COOKIE, session.id, httponly=True, samesite="lax", secure=self.secure,
                            max_age=int(self.sessions.ttl_s), path="/")  # fmt: skip
            resp.delete_cookie(PRE_COOKIE)
            return resp

        @r.post("/logout")
        async def logout(request: Request) -> Response:
            return await page(request, self._logout, post=True)

        @r.get("/")
        async def overview(request: Request) -> Response:
            return await page(request, self._overview)

        @r.get("/accounts/{account}")
        async def account(request: Request, account: str) -> Response:
            return await page(request, self._account, account)

        @r.post("/accounts/{account}/limits")
        async def limits(request: Request, account: str) -> Response:
            return await page(request, self._edit_limits, account, post=True)

        @r.post("/accounts/{account}/block")
        async def block(request: Request, account: str) -> Response:
            return await page(request, self._block, account, True, post=True)

        @r.post("/accounts/{account}/unblock")
        async def unblock(request: Request, account: str) -> Response:
            return await page(request, self._block, account, False, post=True)

        @r.get("/cases")
        async def cases(request: Request) -> Response:
            return await page(request, self._cases)

        @r.get("/cases/{case_id}")
        async def case(request: Request, case_id: str) -> Response:
            return await page(request, self._case, case_id)

        @r.post("/cases/{case_id}/workflow")
        async def workflow(request: Request, case_id: str) -> Response:
            return await page(request, self._workflow, case_id, post=True)

        @r.get("/cases/{case_id}/evidence.zip")
        async def evidence(request: Request, case_id: str) -> Response:
            return await page(request, self._evidence, case_id)

        @r.get("/rates")
        async def rates(request: Request) -> Response:
            return await page(request, self._rates)

        return r

    async def _page(self, request: Request, handler: Callable[..., Any], *args: Any,
                    post: bool = False) -> Response:  # fmt: skip
        ctx = self.ctx(request)
        if ctx is None:
            if post:
                return self.error(request, None, 403, "not logged in (or the session ended)")
            return self.login_redirect(request)
        try:
            form = await self.posted(request, ctx) if post else None
            result = handler(request, ctx, form, *args) if post else handler(request, ctx, *args)
            return result  # type: ignore[no-any-return]
        except Denied as exc:
            return self.error(request, ctx, exc.status, exc.message)

    # -- pages ------------------------------------------------------------------
    def _logout(self, request: Request, ctx: Ctx, form: dict[str, str]) -> Response:
        self.sessions.drop(ctx.session.id)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    def _overview(self, request: Request, ctx: Ctx) -> Response:
        as_of, live = self.as_of(request, self.policy.defaults.timezone or "UTC")
        accounts = self.accounts(ctx.user)
        rows: list[dict[str, Any]] = []
        status = None
        if q.has_records(self.engine):
            assert self.engine is not None
            by_tz: dict[str, list[str]] = {}
            for a in accounts:
                by_tz.setdefault(self.tz_of(a), []).append(a)
            now_vs: dict[str, q.NowVsNormal] = {}
            today: dict[str, date] = {}
            for tz, accs in by_tz.items():
                now_vs.update(q.traffic_now(self.engine, as_of, tz, accs))
                d = as_of.astimezone(ZoneInfo(tz)).date()
                for a in accs:
                    today[a] = d
            first = min((d.replace(day=1) for d in today.values()), default=as_of.date())
            last = max(today.values(), default=as_of.date())
            sums = q.day_sums(self.engine, first, last, accounts)
            stamp, cached = self._ingest
            if cached is None or _time.monotonic() - stamp > 10:
                cached = q.ingest_status(self.engine)
                self._ingest = (_time.monotonic(), cached)
            status = cached
        else:
            now_vs, today, sums = {}, {}, {}
        open_cases = self._open_cases(ctx.user)
        open_by_account: dict[str, int] = {}
        severity: dict[str, int] = {"critical": 0, "warning": 0}
        for c in open_cases:
            open_by_account[c.account] = open_by_account.get(c.account, 0) + 1
            severity[c.severity] = severity.get(c.severity, 0) + 1
        for a in accounts:
            plan = self.service.plan(a)
            lim = plan.limits
            d = today.get(a, as_of.date())
            day = sums.get((a, d), q.DaySums())
            month_start = d.replace(day=1)
            month = sum(
                s.cost_e4 for (acc, dd), s in sums.items() if acc == a and month_start <= dd <= d
            )
            nv = now_vs.get(a)
            rows.append(
                {
                    "account": a,
                    "tz": plan.account.timezone,
                    "currency": plan.account.currency,
                    "blocked": self.service.state.get_block(a),
                    "calls_now": nv.now.calls if nv else 0,
                    "cost_now": nv.now.cost_e4 if nv else 0,
                    "normal_calls": nv.normal_calls if nv else None,
                    "normal_cost": nv.normal_cost_e4 if nv else None,
                    "deviates": bool(nv and nv.normal_calls is not None
                                     and nv.now.calls > 3 * nv.normal_calls + 5),
                    "today_calls": day.calls,
                    "today_cost": day.cost_e4,
                    "day_limit": lim.max_spend_per_day,
                    "month_cost": month,
                    "month_limit": lim.max_spend_per_month,
                    "open_cases": open_by_account.get(a, 0),
                }
            )  # fmt: skip
        rows.sort(key=lambda x: (-x["open_cases"], -x["today_cost"], x["account"]))
        return self.render(
            request, "overview.html", ctx, rows=rows, as_of=as_of, live=live,
            tz=self.policy.defaults.timezone or "UTC", severity=severity,
            day=request.query_params.get("day", ""),
            open_total=len(open_cases), status=status, has_db=q.has_records(self.engine),
        )  # fmt: skip

    def _open_cases(self, user: User) -> list[Any]:
        if self.cases is None:
            return []
        return [
            c for c in self.cases.list_cases(status=["open"], limit=5000) if user.sees(c.account)
        ]

    def _account(self, request: Request, ctx: Ctx, account: str) -> Response:
        self.need_account(ctx, account)
        as_of, live = self.as_of(request, self.tz_of(account))
        plan = self.service.plan(account, fresh=True)
        tz = plan.account.timezone
        zone = ZoneInfo(tz)
        local = as_of.astimezone(zone)
        cur = plan.account.currency
        week_start_local = (local - timedelta(days=local.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        week_start = week_start_local.astimezone(UTC)
        month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        since = min(
            (week_start_local - timedelta(days=7 * q.NORMAL_WEEKS)).astimezone(UTC),
            month_start.astimezone(UTC),
        )
        data: dict[str, Any] = {"has_db": q.has_records(self.engine)}
        if q.has_records(self.engine):
            assert self.engine is not None
            frame = with_local(
                load_db(self.engine, account, since, as_of + timedelta(seconds=1)), tz
            )
            first = q.first_start(self.engine, account)
            import polars as pl

            cur_week = frame.filter(pl.col("start") >= week_start)
            now_slot = local.weekday() * 24 + local.hour
            counts = {k: v for k, v in _by_slot(cur_week).items()}
            calls_now = [counts.get(i, (0, 0))[0] if i <= now_slot else None for i in range(168)]
            cost_now = [cost_from_e4(counts.get(i, (0, 0))[1]) if i <= now_slot else None
                        for i in range(168)]  # fmt: skip
            weeks = [
                k for k in range(1, q.NORMAL_WEEKS + 1)
                if first is not None
                and (week_start_local - timedelta(days=7 * k)).astimezone(UTC) >= first
            ]  # fmt: skip
            normal_calls: list[float | None] = [None] * 168
            normal_cost: list[Decimal | None] = [None] * 168
            if weeks:
                sums: dict[int, list[int]] = {}
                for k in weeks:
                    ws = (week_start_local - timedelta(days=7 * k)).astimezone(UTC)
                    we = (week_start_local - timedelta(days=7 * (k - 1))).astimezone(UTC)
                    part = frame.filter((pl.col("start") >= ws) & (pl.col("start") < we))
                    for slot, (n, c) in _by_slot(part).items():
                        s = sums.setdefault(slot, [0, 0])
                        s[0] += n
                        s[1] += c
                n = len(weeks)
                normal_calls = [sums.get(i, [0, 0])[0] / n for i in range(168)]
                normal_cost = [
                    (Decimal(sums.get(i, [0, 0])[1]) / n / 10000).quantize(Decimal("0.0001"))
                    for i in range(168)
                ]
            over = [
                calls_now[i] is not None and normal_calls[i] is not None
                and calls_now[i] > 3 * normal_calls[i] + 5  # type: ignore[operator]
                for i in range(168)
            ]  # fmt: skip
            ticks = [(d * 24, DAYS[d]) for d in range(7)]
            data["chart_calls"] = bar_line_chart(
                "chart-calls", calls_now, normal_calls, ticks=ticks, bar_label="this week",
                line_label=f"normal ({len(weeks)} wk)" if weeks else "normal (no history)",
                title=f"calls per hour of week, {tz}", highlight=over,
            )  # fmt: skip
            data["chart_cost"] = bar_line_chart(
                "chart-cost", cost_now, normal_cost, ticks=ticks, bar_label="this week",
                line_label=f"normal ({len(weeks)} wk)" if weeks else "normal (no history)",
                title=f"cost per hour of week ({cur}), {tz}", highlight=over,
            )  # fmt: skip
            data["normal_weeks"] = len(weeks)
            today = frame.filter(pl.col("lday") == local.date())
            month = frame.filter(pl.col("start") >= month_start.astimezone(UTC))
            data["today"] = bucket_of(today)
            data["month"] = bucket_of(month)
            data["hour"] = bucket_of(
                frame.filter(pl.col("start") >= local.replace(minute=0, second=0, microsecond=0)
                             .astimezone(UTC))
            )  # fmt: skip
            data["destinations"] = _group(month, ["destination", "country"])[:15]
            data["countries"] = _group(month, ["country"])[:15]
            data["alerts"] = q.recent_alerts(self.engine, account)
        else:
            data.update(today=Bucket(), month=Bucket(), hour=Bucket(), destinations=[],
                        countries=[], alerts=[])  # fmt: skip
        lim = plan.limits
        spend = [
            ("this hour", data["hour"].cost, lim.max_spend_per_hour, "max_spend_per_hour"),
            ("today", data["today"].cost, lim.max_spend_per_day, "max_spend_per_day"),
            ("this month", data["month"].cost, lim.max_spend_per_month, "max_spend_per_month"),
        ]
        calls = [("today", data["today"].calls, lim.max_calls_per_day, "max_calls_per_day")]
        cases = self.cases.list_cases(account=account, limit=20) if self.cases else []
        return self.render(
            request, "account.html", ctx, account=account, plan=plan, tz=tz, cur=cur,
            as_of=as_of, live=live, spend=spend, calls=calls, limits=lim,
            limit_fields=_limit_values(lim), block=self.service.state.get_block(account),
            counters=self.service.counters(account), cases=cases,
            local_date=local.date(), month_label=local.strftime("%B %Y"),
            day=request.query_params.get("day", ""), **data,
        )  # fmt: skip

    def _edit_limits(
        self, request: Request, ctx: Ctx, form: dict[str, str], account: str
    ) -> Response:
        self.need_account(ctx, account)
        if not ctx.user.can_edit_limits:
            raise Denied(403, f"role {ctx.user.role!r} may not change limits (admin only)")
        before = self.service.plan(account, fresh=True).limits
        values = before.model_dump(mode="json", by_alias=True)
        try:
            for name, kind in LIMIT_FIELDS:
                raw = form.get(name, "").strip()
                if kind == "list":
                    values[name] = [
                        x.strip().upper() for x in raw.replace(";", ",").split(",") if x.strip()
                    ]
                elif not raw:
                    values[name] = None
                elif kind == "money":
                    values[name] = str(Decimal(raw))
                else:
                    values[name] = int(raw)
            after = Limits.model_validate(values)
        except (ValidationError, InvalidOperation, ValueError) as exc:
            raise Denied(422, f"limits not changed: {_short_error(exc)}") from None
        value: dict[str, Any] = {"limits": after.model_dump(mode="json", by_alias=True)}
        self.service.set_policy(account, value)
        self.service.audit(
            f"web:{ctx.user.name}", "policy.put", account,
            {"before": before.model_dump(mode="json", by_alias=True), "after": value}, "*",
        )  # fmt: skip
        return RedirectResponse(f"/accounts/{quote(account)}?saved=limits", status_code=303)

    def _block(self, request: Request, ctx: Ctx, form: dict[str, str], account: str,
               on: bool) -> Response:  # fmt: skip
        self.need_account(ctx, account)
        if not ctx.user.can_block:
            raise Denied(403, f"role {ctx.user.role!r} may not block or unblock accounts")
        reason = (form.get("reason") or "").strip()[:500] or (
            "blocked" if on else "unblocked"
        ) + " from the dashboard"
        who = f"web:{ctx.user.name}"
        if on:
            self.service.block(account, reason, who)
            self.service.audit(who, "account.block", account, {"reason": reason}, "*")
        else:
            was = self.service.unblock(account)
            self.service.audit(who, "account.unblock", account,
                               {"reason": reason, "was_blocked": was}, "*")  # fmt: skip
        return RedirectResponse(f"/accounts/{quote(account)}", status_code=303)

    def _cases(self, request: Request, ctx: Ctx) -> Response:
        if self.cases is None:
            return self.render(request, "cases.html", ctx, cases=[], enabled=False, status="open")
        status = request.query_params.get("status", "open")
        wanted = None if status == "all" else [status]
        try:
            items = self.cases.list_cases(status=wanted, limit=1000)
        except ValueError as exc:
            raise Denied(422, str(exc)) from None
        items = [c for c in items if ctx.user.sees(c.account)]
        return self.render(request, "cases.html", ctx, cases=items, enabled=True, status=status,
                           tz_of=self.tz_of)  # fmt: skip

    def _load_case(self, ctx: Ctx, case_id: str, detail: bool = True) -> Any:
        if self.cases is None:
            raise Denied(404, "cases are off: start `tollguard serve` with --db")
        from tollguard.cases.model import CaseError

        try:
            case = self.cases.get(case_id, detail=detail)
        except CaseError as exc:
            raise Denied(404, str(exc)) from None
        if not ctx.user.sees(case.account):
            raise Denied(403, f"user {ctx.user.name!r} may not see case {case_id!r}")
        return case

    def _case_frame(self, case: Any) -> Any:
        """The stored records a case can contain (its account's, or every call to its
        number, from its earliest alert's first record on); the evidence selection
        (``select_case_records``) narrows them down."""
        if not q.has_records(self.engine):
            return None
        from tollguard.cases.records import load_rated_db

        assert self.engine is not None
        alerts = self.cases.case_alerts(case.id)
        since = min([a.started_at for a in alerts] or [case.first_record_at])
        kind = case.subject_kind
        return load_rated_db(
            self.engine,
            accounts=None if kind == "number" else [case.account],
            callees=[case.subject] if kind == "number" else None,
            since=since,
            until=case.closed_at,
        )

    def _case_records(self, case: Any) -> Any:
        from tollguard.reports.evidence import select_case_records

        records = self._case_frame(case)
        if records is None:
            return None
        return select_case_records(records, case, self.cases.case_alerts(case.id))

    def _case(self, request: Request, ctx: Ctx, case_id: str) -> Response:
        case = self._load_case(ctx, case_id)
        tz = self.tz_of(case.account)
        records = self._case_records(case)
        shown: list[dict[str, Any]] = []
        totals = Bucket()
        if records is not None:
            import polars as pl

            records = records.sort("start")
            totals = bucket_of(records.with_columns(pl.col("disposition")))
            shown = list(records.head(200).iter_rows(named=True))
        verbs = []
        if ctx.user.can_work_cases:
            from tollguard.cases.model import TRANSITIONS

            verbs = [v for v, (sources, _) in TRANSITIONS.items() if case.status in sources]
        return self.render(
            request, "case.html", ctx, case=case, tz=tz, records=shown, totals=totals,
            n_records=0 if records is None else records.height, verbs=verbs,
            can_export=records is not None,
        )  # fmt: skip

    def _workflow(self, request: Request, ctx: Ctx, form: dict[str, str], case_id: str) -> Response:
        case = self._load_case(ctx, case_id, detail=False)
        if not ctx.user.can_work_cases:
            raise Denied(403, f"role {ctx.user.role!r} may not work cases")
        verb = form.get("verb", "")
        if verb not in CASE_VERBS:
            raise Denied(422, f"unknown action {verb!r}")
        from tollguard.cases.model import CaseError

        try:
            getattr(self.cases, CASE_VERBS[verb])(
                case.id, actor=f"web:{ctx.user.name}", note=form.get("note", "")[:2000]
            )
        except CaseError as exc:
            raise Denied(409, f"{exc}. {exc.hint}") from None
        return RedirectResponse(f"/cases/{quote(case.id)}", status_code=303)

    def _evidence(self, request: Request, ctx: Ctx, case_id: str) -> Response:
        case = self._load_case(ctx, case_id, detail=False)
        if not ctx.user.can_work_cases:
            raise Denied(403, f"role {ctx.user.role!r} may not export evidence")
        from tollguard.reports.evidence import export_case

        records = self._case_frame(case)
        if records is None:
            raise Denied(404, "no rated records in the database")
        with tempfile.TemporaryDirectory(prefix="tollguard-evidence-") as tmp:
            result = export_case(self.cases, case.id, Path(tmp) / case.id, records, make_zip=True,
                                 actor=f"web:{ctx.user.name}")  # fmt: skip
            assert result.zip_path is not None
            body = result.zip_path.read_bytes()
        return Response(body, media_type="application/zip", headers={
            "content-disposition": f'attachment; filename="{case.id}-evidence.zip"',
            "cache-control": "no-store"})  # fmt: skip

    def _rates(self, request: Request, ctx: Ctx) -> Response:
        accounts = self.accounts(ctx.user)
        decks: dict[str, dict[str, Any]] = {}
        for a in accounts:
            deck = self.service.rates.deck_for(self.service.plan(a).account)
            if deck is None:
                continue
            d = decks.setdefault(deck.name, {"name": deck.name, "currency": deck.currency,
                                             "rows": len(deck.rows), "accounts": []})  # fmt: skip
            d["accounts"].append(a)
        number = request.query_params.get("number", "").strip()[:64]
        account = request.query_params.get("account", "") or (accounts[0] if accounts else "")
        result: dict[str, Any] | None = None
        if number:
            if account and not ctx.user.sees(account):
                raise Denied(403, f"user {ctx.user.name!r} may not see account {account!r}")
            acc = self.service.plan(account).account if account else self.policy.account("")
            num = self.service.numbers.describe(number, acc.context)
            as_of, _ = self.as_of()
            deck = self.service.rates.deck_for(acc)
            row = None
            if deck is not None and num.e164 is not None:
                row = self.service.rates.lookup(deck, num.e164, as_of)
            result = {"number": number, "account": account, "desc": num, "row": row,
                      "deck": deck.name if deck else None, "at": as_of, "tz": acc.timezone,
                      "minute": row.cost(60) if row else None}  # fmt: skip
        return self.render(
            request, "rates.html", ctx, decks=sorted(decks.values(), key=lambda d: d["name"]),
            accounts=accounts, number=number, account=account, result=result,
        )  # fmt: skip


def _by_slot(frame: Any) -> dict[int, tuple[int, int]]:
    import polars as pl

    if frame.height == 0:
        return {}
    agg = frame.group_by("how").agg(pl.len().alias("n"), pl.col("cost_e4").sum().alias("c"))
    return {int(h): (int(n), int(c or 0)) for h, n, c in agg.iter_rows()}


def _group(frame: Any, keys: list[str]) -> list[dict[str, Any]]:
    import polars as pl

    if frame.height == 0:
        return []
    agg = frame.group_by(keys).agg(
        pl.len().alias("calls"), pl.col("billsec").sum().alias("billsec"),
        pl.col("cost_e4").sum().alias("cost_e4"),
    ).sort(["cost_e4", "calls"], descending=True, nulls_last=True)  # fmt: skip
    return [
        {**{k: row[k] for k in keys}, "calls": row["calls"],
         "minutes": (Decimal(row["billsec"] or 0) / 60).quantize(Decimal("0.01")),
         "cost": cost_from_e4(int(row["cost_e4"] or 0))}
        for row in agg.iter_rows(named=True)
    ]  # fmt: skip


def _limit_values(lim: Limits) -> list[tuple[str, str, str]]:
    out = []
    for name, kind in LIMIT_FIELDS:
        v = getattr(lim, name)
        text = ", ".join(v) if kind == "list" else ("" if v is None else str(v))
        out.append((name, kind, text))
    return out


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
        )
    return str(exc) or type(exc).__name__


def _safe_next(value: str) -> str:
    """Only local paths (no open redirect to another site)."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value
