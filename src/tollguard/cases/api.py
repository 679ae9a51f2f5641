"""FastAPI routes over ``CaseService`` for the HTTP API to include:

    from tollguard.cases.api import router
    app.include_router(router(lambda: service), prefix="/v1")

Errors are RFC 9457 problem details (``application/problem+json``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from tollguard.cases.model import CaseError, CaseNotFound
from tollguard.cases.service import CaseService


class Decision(BaseModel):
    actor: str
    note: str = ""
    at: datetime | None = None


class CommentBody(BaseModel):
    actor: str
    text: str
    at: datetime | None = None


class AssignBody(BaseModel):
    actor: str
    assignee: str
    at: datetime | None = None


def _problem(exc: CaseError) -> JSONResponse:
    status = 404 if isinstance(exc, CaseNotFound) else 409
    body = {
        "type": "about:blank",
        "title": "case not found" if status == 404 else "case conflict",
        "status": status,
        "detail": str(exc),
    }
    if exc.hint:
        body["hint"] = exc.hint
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def router(service: Callable[[], CaseService]) -> APIRouter:
    r = APIRouter(tags=["cases"])

    @r.get("/cases")
    def list_cases(
        status: list[str] | None = Query(default=None),
        account: str | None = None,
        assignee: str | None = None,
        severity: str | None = None,
        limit: int = Query(default=200, ge=1, le=5000),
    ) -> Any:
        try:
            cases = service().list_cases(
                status=status, account=account, assignee=assignee, severity=severity, limit=limit
            )
        except CaseError as exc:
            return _problem(exc)
        return [c.to_dict() for c in cases]

    @r.get("/cases/{case_id}")
    def show(case_id: str) -> Any:
        try:
            return service().get(case_id, detail=True).to_dict(detail=True)
        except CaseError as exc:
            return _problem(exc)

    def decide(verb: str) -> Callable[[str, Decision], Any]:
        def handler(case_id: str, body: Decision) -> Any:
            try:
                case = getattr(service(), verb)(
                    case_id, actor=body.actor, now=body.at, note=body.note
                )
            except CaseError as exc:
                return _problem(exc)
            return case.to_dict()

        return handler

    for path, verb in (
        ("ack", "ack"),
        ("confirm", "confirm"),
        ("false-positive", "false_positive"),
        ("close", "close"),
    ):
        r.add_api_route(f"/cases/{{case_id}}/{path}", decide(verb), methods=["POST"])

    @r.post("/cases/{case_id}/comment")
    def comment(case_id: str, body: CommentBody) -> Any:
        try:
            return service().comment(case_id, body.text, actor=body.actor, now=body.at).to_dict()
        except CaseError as exc:
            return _problem(exc)

    @r.post("/cases/{case_id}/assign")
    def assign(case_id: str, body: AssignBody) -> Any:
        try:
            case = service().assign(case_id, body.assignee, actor=body.actor, now=body.at)
        except CaseError as exc:
            return _problem(exc)
        return case.to_dict()

    return r
