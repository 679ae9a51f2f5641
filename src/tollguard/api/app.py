"""The HTTP API: authorize, call events, CDR intake, accounts, audit, health, metrics.

Handlers are ``async def`` and call the (fast, in-memory or one-round-trip Redis)
service directly, so the authorize path has no thread hop. Every error is an RFC 9457
problem document; no request can change a counter unless it was fully valid.
"""

import asyncio
import contextlib
import gc
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from tollguard.api.auth import DEV_KEY, ApiKey, Keyring
from tollguard.api.models import (
    AnswerRequest,
    AuthorizeRequest,
    AuthorizeResponse,
    BlockRequest,
    CallResponse,
    CdrIn,
    EndRequest,
    PolicyUpdate,
)
from tollguard.api.problems import MEDIA_TYPE, Problem, problem_body, problem_response
from tollguard.cdr.model import CallRecord, Disposition
from tollguard.detect.alert import Alert
from tollguard.limits.leases import LeaseMetrics, LeasingRedisState
from tollguard.limits.money import fmt_e4
from tollguard.limits.service import AuthorizeService, NotFound
from tollguard.limits.state import CallState

if TYPE_CHECKING:
    from tollguard.cases.service import CaseService
    from tollguard.ingest.core import Ingestor

log = logging.getLogger("tollguard.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 64 * 1024
MAX_CDR_BODY = 8 * 1024 * 1024
MAX_CDRS = 10_000
OPEN_PATHS = frozenset({"/health", "/metrics"})
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": title, "content": {MEDIA_TYPE: {"schema": {"type": "object"}}}}
    for code, title in (
        (401, "Missing or unknown API key"),
        (403, "The key's role does not allow this"),
        (413, "Body too large"),
        (422, "Invalid request"),
    )
}


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    decisions: Counter

    @classmethod
    def create(cls) -> "Metrics":
        reg = CollectorRegistry()
        return cls(
            reg,
            Counter(
                "tollguard_http_requests", "HTTP requests", ["route", "method", "status"],
                registry=reg,
            ),
            Histogram(
                "tollguard_http_request_seconds", "Request latency", ["route"], registry=reg,
                buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            ),
            Counter(
                "tollguard_authorize_decisions", "Authorize answers", ["decision", "reason"],
                registry=reg,
            ),
        )  # fmt: skip

    def __post_init__(self) -> None:
        # the labelled children, looked up once (``labels()`` costs more than ``inc()``)
        self._latency: dict[str, Any] = {}
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._decisions: dict[tuple[str, str], Any] = {}

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        label = route_label(path)
        hist = self._latency.get(label)
        if hist is None:
            hist = self._latency[label] = self.latency.labels(label)
        hist.observe(seconds)
        count = self._requests.get((label, method, status))
        if count is None:
            count = self._requests[(label, method, status)] = self.requests.labels(
                label, method, str(status)
            )
        count.inc()

    def decided(self, decision: str, reason: str) -> None:
        count = self._decisions.get((decision, reason))
        if count is None:
            count = self._decisions[(decision, reason)] = self.decisions.labels(decision, reason)
        count.inc()


def route_label(path: str) -> str:
    parts = path.split("/")
    if path.startswith("/v1/calls/") and len(parts) >= 5:
        return "/v1/calls/{call_id}/" + parts[-1]
    if path.startswith("/v1/accounts/") and len(parts) >= 4:
        rest = parts[4:]
        if len(rest) >= 2 and rest[0] == "counters":
            return "/v1/accounts/{account}/counters/{name}"
        return "/v1/accounts/{account}" + "".join("/" + p for p in rest)
    if path in OPEN_PATHS or path.startswith("/v1/") or path in ("/openapi.json", "/docs"):
        return path
    return "other"


class Guard:
    """Outermost ASGI layer: body size limit (buffered), metrics, last-resort problem."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body: int,
        max_cdr_body: int,
        fast: "dict[tuple[str, str], FastRoute] | None" = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.max_cdr_body = max_cdr_body
        # (method, path) answered here from the buffered body, without the router: the
        # hot path (authorize) pays only for its own work, not for routing and FastAPI's
        # request machinery. The same route stays registered with FastAPI (OpenAPI).
        self.fast = fast if fast is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        limit = self.max_cdr_body if path == "/v1/cdrs" else self.max_body
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            declared = None
            for name, value in scope["headers"]:
                if name == b"content-length":
                    declared = value
                    break
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                await self._problem(send_wrapper, 413, "body-too-large", f"at most {limit} bytes")
                return
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body = message.get("body", b"")
                size += len(body)
                if size > limit:
                    await self._problem(
                        send_wrapper, 413, "body-too-large", f"at most {limit} bytes"
                    )
                    return
                chunks.append(body)
                more = message.get("more_body", False)
            whole = b"".join(chunks)
            fast = self.fast.get((scope["method"], path)) if self.fast else None
            if fast is None and path.startswith("/v1/calls/"):  # /v1/calls/{call_id}/event
                parts = path.split("/")
                if len(parts) == 5 and parts[3]:
                    fast = self.fast.get((scope["method"], CALL_EVENT + parts[4]))
            if fast is not None:
                await fast(scope, whole, send_wrapper)
                return
            delivered = [False]

            async def replay() -> Message:
                if not delivered[0]:
                    delivered[0] = True
                    return {"type": "http.request", "body": whole, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapper)
        finally:
            self.metrics.observe(path, scope["method"], status[0], time.perf_counter() - started)

    @staticmethod
    async def _problem(send: Send, status: int, slug: str, detail: str) -> None:
        body = orjson.dumps(problem_body(status, slug, detail))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


FastRoute = Callable[[Scope, bytes, Send], Awaitable[None]]
CALL_EVENT = "/v1/calls/{call_id}/"  # + answer | end: fast routes of one call's events


async def _send_json(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _call_out(call: CallState, status: str | None = None) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "account": call.account,
        "state": call.state,
        "reserved": fmt_e4(call.reserved_e4),
        "cost": None if call.cost_e4 is None else fmt_e4(call.cost_e4),
        "status": status,
    }


_CDR_LIST = TypeAdapter(list[CdrIn])
_CDR_SCHEMA = {"type": "array", "items": CdrIn.model_json_schema()}


def create_app(
    service: AuthorizeService,
    keyring: Keyring | None = None,
    *,
    max_body: int = MAX_BODY,
    max_cdr_body: int = MAX_CDR_BODY,
    sweep_interval_s: float = 30.0,
    engine: Any = None,
    cases: "CaseService | None" = None,
    web: "APIRouter | None" = None,
    ingestor: "Ingestor | None" = None,
) -> FastAPI:
    """Build the API over a service. ``keyring`` None or empty: no authentication (dev).
    ``web``: the dashboard's pages (``tollguard.web.app.Dashboard(...).router``).
    ``ingestor``: POST /v1/cdrs stores records durably first; only new ones are detected."""
    keys = keyring or Keyring.open()
    metrics = Metrics.create()
    if isinstance(service.state, LeasingRedisState):
        metrics.registry.register(LeaseMetrics(service.state))
    engine_box: dict[str, Any] = {"engine": engine}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # What start-up loaded (rate decks, numbering data, policy: ~92k objects) lives
        # as long as the server. Frozen, a full collection no longer walks it: measured
        # 51-61 ms per full collection before, ~0 after, a pause every request waits out.
        gc.collect()
        gc.freeze()
        task = None
        if sweep_interval_s > 0:

            async def sweep() -> None:
                while True:
                    await asyncio.sleep(sweep_interval_s)
                    try:
                        n = await service.expire_async()
                        if n:
                            log.info("expired %d calls that never reported their end", n)
                    except Exception:  # keep sweeping; the next round retries
                        log.exception("expiry sweep failed")

            task = asyncio.create_task(sweep())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            await service.state.shutdown()  # e.g. quota leases go back while Redis is near
            gc.unfreeze()  # the process may go on (tests, embedding): collect as before

    app = FastAPI(
        title="tollguard",
        version="0.1.0",
        summary="Real-time call authorization, limits and fraud detection.",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
        # tollguard exports Prometheus metrics itself (/metrics); FastAPI's OpenTelemetry
        # hooks would otherwise look up the global providers on every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = service
    app.state.metrics = metrics
    fast: dict[tuple[str, str], FastRoute] = {}
    app.add_middleware(
        Guard, metrics=metrics, max_body=max_body, max_cdr_body=max_cdr_body, fast=fast
    )

    # -- errors -----------------------------------------------------------------
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return problem_response(exc.status, exc.slug, exc.detail, request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(
                400, "malformed-json", "the body is not valid JSON", request.url.path
            )
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem_response(422, "validation", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http")
        return problem_response(exc.status_code, slug, str(exc.detail), request.url.path)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        return crash_response(exc, request.url.path)

    def crash_response(exc: Exception, path: str) -> Response:
        if _is_state_outage(exc):
            log.error("state backend unavailable: %s", exc)
            return problem_response(
                503, "state-unavailable",
                "the state backend did not answer; apply the account's fail mode",
                path,
            )  # fmt: skip
        log.exception("unhandled error on %s", path)
        return problem_response(500, "internal", "unexpected error (logged)", path)

    # -- auth -------------------------------------------------------------------
    def caller_key(request: Request) -> ApiKey:
        return key_from(request.headers.get("x-api-key"), request.headers.get("authorization"))

    def key_from(x_api_key: str | None, authorization: str | None) -> ApiKey:
        if not keys.enabled:
            return DEV_KEY
        raw = x_api_key
        if raw is None:
            auth = authorization or ""
            if auth[:7].lower() == "bearer ":
                raw = auth[7:].strip()
        key = keys.identify(raw)
        if key is None:
            raise Problem(401, "unauthenticated", "send a valid key as 'Authorization: Bearer'")
        return key

    def need(permission: str) -> Callable[[Request], ApiKey]:
        def dep(request: Request) -> ApiKey:
            key = caller_key(request)
            if not key.can(permission):
                raise Problem(
                    403, "forbidden", f"role {key.role!r} may not {permission}", key=key.name
                )
            return key

        return dep

    def visible(key: ApiKey, account: str) -> None:
        if not (service.known(account) and keys.sees(key, account)):
            raise Problem(404, "unknown-account", f"no account {account!r} for this key")

    async def call_visible(key: ApiKey, call_id: str) -> CallState:
        call = await service.state.get_call_async(call_id)
        if call is None or not keys.sees(key, call.account):
            raise Problem(404, "unknown-call", f"no call {call_id!r} (never authorized here)")
        return call

    # -- open -------------------------------------------------------------------
    @app.get("/health", tags=["ops"])
    async def health() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/metrics", tags=["ops"])
    async def prom() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- authorize and call events ----------------------------------------------
    authorize_schema = AuthorizeRequest.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )

    @app.post(
        "/v1/authorize",
        tags=["switch"],
        response_model=AuthorizeResponse,
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": authorize_schema}},
                "required": True,
            }
        },
    )
    async def authorize(request: Request) -> Response:
        """May this call go through, and for how long? Deny reasons: docs/authorize.md.

        Served by ``authorize_fast`` from the Guard; this route documents it (OpenAPI) and
        answers when the app runs without the Guard.
        """
        key = caller_key(request)
        body = await decide(key, await request.body())
        return Response(body, media_type="application/json")

    async def decide(key: ApiKey, raw: bytes) -> bytes:
        """The hot path: the body is validated straight from bytes, the key checked inline
        (same rules as the other endpoints, without FastAPI's dependency resolution)."""
        if not key.can("authorize"):
            raise Problem(403, "forbidden", f"role {key.role!r} may not authorize", key=key.name)
        try:
            body = AuthorizeRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise _invalid_body(exc) from None
        if keys.enabled and not keys.sees(key, body.account):
            d = {"decision": "deny", "reason": "unknown_account", "max_duration_s": 0,
                 "call_id": body.call_id, "account": body.account, "rate": None, "number": None,
                 "limits": [], "warnings": [], "detail": {}, "report_only": False,
                 "fail_mode": "closed"}  # fmt: skip
            metrics.decided("deny", "unknown_account")
            return orjson.dumps(d)
        decision = await service.authorize_async(
            body.account, body.caller, body.callee, body.call_id, body.at
        )
        metrics.decided(decision.decision, decision.reason)
        if decision.decision == "deny" or decision.warnings:
            log.info(
                "authorize %s %s -> %s %s %s", body.account, body.callee, decision.decision,
                decision.reason, decision.warnings,
            )  # fmt: skip
        return orjson.dumps(decision.to_dict())

    def fast_route(answer: Callable[[ApiKey, str, bytes], Awaitable[bytes]]) -> FastRoute:
        """A route the Guard answers from the buffered body: the key from the headers (as
        the FastAPI dependencies read it), the answer's JSON, problems as the app's."""

        async def route(scope: Scope, raw: bytes, send: Send) -> None:
            x_api_key = authorization = None
            for name, value in scope["headers"]:  # the first of each, as headers.get
                if name == b"authorization" and authorization is None:
                    authorization = value.decode("latin-1")
                elif name == b"x-api-key" and x_api_key is None:
                    x_api_key = value.decode("latin-1")
            path = scope["path"]
            try:
                body = await answer(key_from(x_api_key, authorization), path, raw)
            except Problem as exc:
                err = problem_response(exc.status, exc.slug, exc.detail, path, **exc.extra)
                await err(scope, _no_body, send)
                return
            except Exception as exc:
                await crash_response(exc, path)(scope, _no_body, send)
                return
            await _send_json(send, body)

        return route

    async def authorize_answer(key: ApiKey, _path: str, raw: bytes) -> bytes:
        return await decide(key, raw)

    fast[("POST", "/v1/authorize")] = fast_route(authorize_answer)

    async def answered(key: ApiKey, call_id: str, body: AnswerRequest | None) -> bytes:
        call = await service.answer_async(
            call_id, body.at if body else None, await call_visible(key, call_id)
        )
        return orjson.dumps(_call_out(call))

    async def ended(key: ApiKey, call_id: str, body: EndRequest | None) -> bytes:
        seen = await call_visible(key, call_id)
        body = body or EndRequest()
        try:
            status, call, _ = await service.end_async(
                call_id, body.billsec, body.at, body.answered, seen
            )
        except NotFound:
            raise Problem(404, "unknown-call", f"no call {call_id!r}") from None
        return orjson.dumps(_call_out(call, status))

    @app.post("/v1/calls/{call_id}/answer", tags=["switch"], response_model=CallResponse)
    async def answer(
        call_id: str,
        key: Annotated[ApiKey, Depends(need("events"))],
        body: AnswerRequest | None = None,
    ) -> Response:
        """The call was answered: it may now last its granted duration."""
        return Response(await answered(key, call_id, body), media_type="application/json")

    @app.post("/v1/calls/{call_id}/end", tags=["switch"], response_model=CallResponse)
    async def end(
        call_id: str,
        key: Annotated[ApiKey, Depends(need("events"))],
        body: EndRequest | None = None,
    ) -> Response:
        """Settle the call at its rated cost (from billsec, or answer→``at``)."""
        return Response(await ended(key, call_id, body), media_type="application/json")

    def call_event(
        model: type[AnswerRequest] | type[EndRequest],
        settle: Callable[[ApiKey, str, Any], Awaitable[bytes]],
    ) -> FastRoute:
        """answer/end from the Guard: one call of a whole call's three requests each."""

        async def event(key: ApiKey, path: str, raw: bytes) -> bytes:
            if not key.can("events"):
                raise Problem(403, "forbidden", f"role {key.role!r} may not events", key=key.name)
            body = None
            # no body or null: the defaults, as FastAPI's optional body; like authorize's
            # fast path, a JSON body is read whatever its content type says
            if raw and raw != b"null":
                try:
                    body = model.model_validate_json(raw)
                except ValidationError as exc:
                    raise _invalid_body(exc, ("body",)) from None
            return await settle(key, path.split("/")[3], body)

        return fast_route(event)

    fast[("POST", CALL_EVENT + "answer")] = call_event(AnswerRequest, answered)
    fast[("POST", CALL_EVENT + "end")] = call_event(EndRequest, ended)

    @app.post("/v1/calls/expire", tags=["switch"])
    async def expire(
        key: Annotated[ApiKey, Depends(need("events"))],
        at: Annotated[datetime | None, Query()] = None,
    ) -> Response:
        """Settle calls whose end never came (also done by the background sweep)."""
        return _json({"expired": await service.expire_async(_aware(at))})

    # -- CDR intake ----------------------------------------------------------------
    @app.post(
        "/v1/cdrs",
        tags=["records"],
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {"schema": _CDR_SCHEMA},
                    "text/csv": {"schema": {"type": "string"}},
                },
                "required": True,
            }
        },
    )  # fmt: skip
    async def cdrs(
        request: Request,
        key: Annotated[ApiKey, Depends(need("cdrs"))],
        fmt: Annotated[str, Query(alias="format", max_length=32)] = "auto",
    ) -> Response:
        """Finished call records (JSON list or CSV) into the detection engine."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        raw = await request.body()
        if ctype == "application/json":
            try:
                items = _CDR_LIST.validate_json(raw)
            except ValidationError as exc:
                raise _invalid_body(exc) from None
            if len(items) > MAX_CDRS:
                raise Problem(413, "too-many-records", f"at most {MAX_CDRS} records per request")
            records = [_record_from(service, i, n) for n, i in enumerate(items)]
            quarantined = 0
        elif ctype in ("text/csv", "text/plain", "application/csv"):
            records, quarantined = _records_from_csv(service, raw, fmt)
        else:
            raise Problem(415, "unsupported-media-type", "send application/json or text/csv")
        rejected = [
            {"record_id": r.record_id, "reason": "unknown_account"}
            for r in records
            if not (service.known(r.account) and keys.sees(key, r.account))
        ]
        bad = {x["record_id"] for x in rejected}
        accepted = [r for r in records if r.record_id not in bad]
        fresh, stored = accepted, None
        if ingestor is not None and accepted:  # durable, idempotent by record id
            result, fresh = await asyncio.to_thread(ingestor.store_new, accepted, "api")
            stored = {"inserted": result.inserted, "duplicates": result.duplicates}
        alerts, blocked = _detect(service, engine_box, fresh, key)
        if cases is not None and alerts:
            cases.ingest_batch(alerts)
        return _json(
            {
                "accepted": len(accepted),
                "rejected": rejected,
                "quarantined": quarantined,
                "stored": stored,
                "engine": engine_box["engine"] is not None,
                "alerts": [a.to_dict() for a in alerts],
                "blocked": blocked,
            }
        )

    # -- accounts -------------------------------------------------------------------
    # Plain functions: FastAPI runs them on its thread pool, so their state reads and
    # writes (the blocking Redis client) never hold up authorize on the event loop.
    @app.get("/v1/accounts/{account}", tags=["accounts"])
    def account_info(account: str, key: Annotated[ApiKey, Depends(need("read"))]) -> Response:
        visible(key, account)
        plan = service.plan(account, fresh=True)
        block = service.state.get_block(account)
        acc = plan.account
        return _json(
            {
                "account": account,
                "timezone": acc.timezone,
                "currency": acc.currency,
                "rates": plan.deck.name if plan.deck is not None else None,
                "report_only": acc.report_only,
                "on_critical": acc.on_critical,
                "fail_mode": acc.fail_mode,
                "limits": acc.limits.model_dump(mode="json", by_alias=True),
                "overridden": plan.overridden,
                "blocked": None if block is None else vars_block(block),
            }
        )

    @app.get("/v1/accounts/{account}/policy", tags=["accounts"])
    def get_policy(account: str, key: Annotated[ApiKey, Depends(need("read"))]) -> Response:
        visible(key, account)
        acc = service.plan(account, fresh=True).account
        return _json(
            {
                "limits": acc.limits.model_dump(mode="json", by_alias=True),
                "report_only": acc.report_only,
                "on_critical": acc.on_critical,
                "fail_mode": acc.fail_mode,
            }
        )

    @app.put("/v1/accounts/{account}/policy", tags=["accounts"])
    def put_policy(
        account: str, body: PolicyUpdate, key: Annotated[ApiKey, Depends(need("policy"))]
    ) -> Response:
        """Replace the account's limits at runtime (kept in the state backend)."""
        visible(key, account)
        before = service.plan(account, fresh=True).account
        value: dict[str, Any] = {"limits": body.limits.model_dump(mode="json", by_alias=True)}
        for name in ("report_only", "on_critical", "fail_mode"):
            v = getattr(body, name)
            if v is not None:
                value[name] = v
        service.set_policy(account, value)
        service.audit(
            key.name, "policy.put", account,
            {"before": before.limits.model_dump(mode="json", by_alias=True), "after": value},
            key.tenant,
        )  # fmt: skip
        return get_policy(account, key)

    @app.delete("/v1/accounts/{account}/policy", tags=["accounts"])
    def delete_policy(account: str, key: Annotated[ApiKey, Depends(need("policy"))]) -> Response:
        """Drop the runtime override: the policy file applies again."""
        visible(key, account)
        service.set_policy(account, None)
        service.audit(key.name, "policy.delete", account, {}, key.tenant)
        return get_policy(account, key)

    @app.post("/v1/accounts/{account}/block", tags=["accounts"])
    def block(
        account: str, body: BlockRequest, key: Annotated[ApiKey, Depends(need("block"))]
    ) -> Response:
        visible(key, account)
        state = service.block(account, body.reason, key.name)
        service.audit(key.name, "account.block", account, {"reason": body.reason}, key.tenant)
        return _json({"account": account, "blocked": vars_block(state)})

    @app.post("/v1/accounts/{account}/unblock", tags=["accounts"])
    def unblock(
        account: str, body: BlockRequest, key: Annotated[ApiKey, Depends(need("block"))]
    ) -> Response:
        visible(key, account)
        was = service.unblock(account)
        service.audit(
            key.name, "account.unblock", account, {"reason": body.reason, "was_blocked": was},
            key.tenant,
        )  # fmt: skip
        return _json({"account": account, "blocked": None, "was_blocked": was})

    @app.get("/v1/accounts/{account}/counters", tags=["accounts"])
    def counters(
        account: str,
        key: Annotated[ApiKey, Depends(need("read"))],
        at: Annotated[datetime | None, Query()] = None,
        country: Annotated[list[str] | None, Query(max_length=20)] = None,
        number_type: Annotated[list[str] | None, Query(max_length=20)] = None,
    ) -> Response:
        """Spend (hour/day/month; spent and reserved), calls (minute/day), concurrent, block."""
        visible(key, account)
        when = _aware(at)
        return _json(
            service.counters(
                account, when, [c.upper()[:3] for c in country or []],
                [t.upper()[:32] for t in number_type or []],
            )
        )  # fmt: skip

    @app.delete("/v1/accounts/{account}/counters/{name}", tags=["accounts"])
    def reset(
        account: str,
        name: str,
        key: Annotated[ApiKey, Depends(need("reset"))],
        at: Annotated[datetime | None, Query()] = None,
    ) -> Response:
        """Reset one counter of the period at ``at`` (spend: settled part only)."""
        visible(key, account)
        try:
            n = service.reset_counter(account, name, _aware(at))
        except NotFound:
            raise Problem(404, "unknown-counter", f"no counter {name!r}") from None
        service.audit(key.name, "counter.reset", account, {"counter": name, "n": n}, key.tenant)
        return _json({"account": account, "counter": name, "reset": n})

    @app.get("/v1/audit", tags=["accounts"])
    def audit(
        key: Annotated[ApiKey, Depends(need("read"))],
        limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
        account: Annotated[str | None, Query(max_length=128)] = None,
    ) -> Response:
        """Who changed what, when: newest first, only this key's tenant."""
        entries = [
            e for e in service.state.audit(limit * 4 if account or keys.enabled else limit)
            if (e.get("account") is None and key.tenant in ("*", e.get("tenant")))
            or (e.get("account") is not None and keys.sees(key, e["account"]))
        ]  # fmt: skip
        if account is not None:
            entries = [e for e in entries if e.get("account") == account]
        return _json({"entries": entries[:limit]})

    if cases is not None:
        from tollguard.cases.api import Viewer
        from tollguard.cases.api import router as cases_router

        def case_viewer(key: Annotated[ApiKey, Depends(need("cases"))]) -> Viewer:
            # a key sees the cases of its tenant's accounts; the dev key acts as the body says
            name = None if key is DEV_KEY else key.name
            return Viewer(name, lambda account: keys.sees(key, account))

        app.include_router(cases_router(lambda: cases, case_viewer), prefix="/v1")
    if web is not None:
        app.include_router(web)
    return app


def vars_block(block: Any) -> dict[str, str]:
    return {"reason": block.reason, "by": block.by, "at": block.at}


def _aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    if at.tzinfo is None:
        raise Problem(422, "validation", "at: give an offset, e.g. 2024-06-01T10:00:00+02:00")
    return at


def _plain(errs: list[Any]) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e["loc"]], "msg": str(e["msg"]), "type": str(e["type"])}
        for e in errs[:50]
    ]


def _is_state_outage(exc: Exception) -> bool:
    import sqlite3

    import redis

    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | sqlite3.OperationalError)


def _record_from(service: AuthorizeService, item: CdrIn, n: int) -> CallRecord:
    ctx = service.policy.dialing_context(item.account)
    num = service.numbers.describe(item.callee, ctx)
    end = item.end or item.start
    duration = (
        item.duration if item.duration is not None else int((end - item.start).total_seconds())
    )
    disposition = Disposition(item.disposition)
    record = CallRecord(
        record_id=item.record_id or f"api:{item.account}:{item.start.isoformat()}:{n}",
        account=item.account,
        caller=item.caller,
        callee=item.callee,
        start=item.start.astimezone(UTC),
        end=end.astimezone(UTC),
        duration=max(duration, 0),
        billsec=item.billsec,
        disposition=disposition,
        answer=item.answer.astimezone(UTC) if item.answer else None,
        source="api",
        hangup_cause=item.hangup_cause,
        callee_e164=num.e164,
        country=num.country,
        number_type=num.number_type,
        risk=num.risk,
    )
    plan = service.plan(item.account)
    if plan.deck is not None and num.e164 is not None:
        row = service.rates.lookup(plan.deck, num.e164, record.start)
        if row is not None:
            record.cost = row.cost(item.billsec, disposition is Disposition.ANSWERED)
            record.currency = row.currency
            record.prefix = row.prefix
            record.deck = row.deck
            record.deck_row = row.row
    return record


def _records_from_csv(
    service: AuthorizeService, raw: bytes, fmt: str
) -> tuple[list[CallRecord], int]:
    try:
        from tollguard.cdr.records import records_from_frame
        from tollguard.scan import Scanner, ScanOptions, ScanResult
    except ImportError:
        raise Problem(501, "csv-unavailable", "CSV intake needs the CDR readers") from None
    fd, name = tempfile.mkstemp(suffix=".csv", prefix="tollguard-cdrs-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        scanner = Scanner(service.policy, ScanOptions(fmt=fmt, rates=service.rates.default_rates))
        result = ScanResult(currency=service.policy.defaults.currency or "EUR")
        from pathlib import Path

        records: list[CallRecord] = []
        try:
            for frame in scanner.rated_batches([Path(name)], result):
                records.extend(records_from_frame(frame))
        except (ValueError, LookupError) as exc:
            raise Problem(422, "unreadable-cdrs", str(exc)[:500]) from None
        return records, result.rejected
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _invalid_body(exc: ValidationError, loc: tuple[str, ...] = ()) -> Problem:
    """A body that is not JSON (400) or not the expected shape (422), as a problem.
    ``loc`` prefixes each error's location (FastAPI's body parameters say "body")."""
    errs = exc.errors(include_url=False, include_input=False)
    if loc:
        errs = [{**e, "loc": (*loc, *e["loc"])} for e in errs]  # type: ignore[typeddict-item]
    if any(e["type"] == "json_invalid" for e in errs):
        return Problem(400, "malformed-json", "the body is not valid JSON")
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errs[:5])
    return Problem(422, "validation", detail, errors=_plain(errs))


def _detect(
    service: AuthorizeService, box: dict[str, Any], records: list[CallRecord], key: ApiKey
) -> tuple[list[Alert], list[str]]:
    if box["engine"] is None:
        try:
            from tollguard.detect.engine import Engine

            box["engine"] = Engine(service.policy)
        except ImportError:  # the engine (or one of its detectors) is not installed
            log.warning("detection engine not available; records accepted without detection")
            return [], []
    engine = box["engine"]
    alerts: list[Alert] = []
    blocked: list[str] = []
    for record in sorted(records, key=lambda r: (r.end, r.record_id)):
        for alert in engine.process(record):
            alerts.append(alert)
            if alert.severity != "critical" or alert.report_only:
                continue
            acc = service.plan(alert.account).account
            if acc.on_critical != "block" or acc.report_only or alert.account in blocked:
                continue
            if service.state.get_block(alert.account) is not None:
                continue
            why = alert.explanation.get("why") or alert.explanation.get("parameter") or ""
            reason = f"critical alert {alert.id} ({alert.detector}): {why}"[:500]
            service.block(alert.account, reason, f"engine via {key.name}")
            service.audit(
                f"engine via {key.name}", "account.block", alert.account,
                {"reason": reason, "alert": alert.id}, key.tenant,
            )  # fmt: skip
            blocked.append(alert.account)
    return alerts, blocked
