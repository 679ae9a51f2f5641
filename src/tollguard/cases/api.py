"""FastAPI routes over ``CaseService`` for the HTTP API to include:

    from tollguard.cases.api import router
    app.include_router(router(lambda: service, viewer_dependency), prefix="/v1")

``viewer`` is a FastAPI dependency giving the caller as a ``Viewer``: its cases are
only those of the accounts it ``sees`` (a case of another tenant answers 404, as if it
did not exist), and its name is recorded as who acted, beside the ``actor`` the body
may give (a person working through a shared key). Without one every case is visible and
the body's ``actor`` is recorded as given (embedding, tests).

Errors are RFC 9457 problem details (``application/problem+json``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from tollguard.cases.model import Case, CaseError, CaseNotFound
from tollguard.cases.service import CaseService


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who calls: a name to record (None: record the body's actor as given) and which
    accounts' cases it may see and work."""

    name: str | None
    sees: Callable[[str], bool]


EVERYONE = Viewer(None, lambda account: True)


def _everyone() -> Viewer:
    return EVERYONE


class Decision(BaseModel):
    actor: str | None = None
    note: str = ""
    at: datetime | None = None


class CommentBody(BaseModel):
    actor: str | None = None
    text: str
    at: datetime | None = None


class AssignBody(BaseModel):
    actor: str | None = None
    assignee: str
    at: datetime | None = None


def _actor(viewer: Viewer, given: str | None) -> str:
    """The recorded actor: the authenticated caller, with the person it names if any."""
    if viewer.name is None:
        if not given:
            raise _NoActor("say who acts: give 'actor' in the body")
        return given
    if given and given != viewer.name:
        return f"{given} (key {viewer.name})"
    return viewer.name


class _NoActor(CaseError):
    """The body must say who acts (no authenticated caller to record)."""


_TITLES = {404: "case not found", 409: "case conflict", 422: "who acts is missing"}


def _problem(exc: CaseError) -> JSONResponse:
    status = 404 if isinstance(exc, CaseNotFound) else 422 if isinstance(exc, _NoActor) else 409
    body = {
        "type": "about:blank",
        "title": _TITLES[status],
        "status": status,
        "detail": str(exc),
    }
    if exc.hint:
        body["hint"] = exc.hint
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def router(
    service: Callable[[], CaseService], viewer: Callable[..., Viewer] = _everyone
) -> APIRouter:
    r = APIRouter(tags=["cases"])
    caller = Depends(viewer)  # a default, not an annotation: annotations are strings here

    def visible(case_id: str, who: Viewer, detail: bool = False) -> Case:
        case = service().get(case_id, detail=detail)
        if not who.sees(case.account):
            raise CaseNotFound(f"no case {case_id!r}")
        return case

    @r.get("/cases")
    def list_cases(
        who: Viewer = caller,
        status: list[str] | None = Query(default=None),
        account: str | None = None,
        assignee: str | None = None,
        severity: str | None = None,
        limit: int = Query(default=200, ge=1, le=5000),
    ) -> Any:
        scoped = who is not EVERYONE
        try:
            cases = service().list_cases(
                status=status,
                account=account,
                assignee=assignee,
                severity=severity,
                limit=5000 if scoped else limit,  # other tenants' cases are dropped below
            )
        except CaseError as exc:
            return _problem(exc)
        return [c.to_dict() for c in cases if who.sees(c.account)][:limit]

    @r.get("/cases/{case_id}")
    def show(case_id: str, who: Viewer = caller) -> Any:
        try:
            return visible(case_id, who, detail=True).to_dict(detail=True)
        except CaseError as exc:
            return _problem(exc)

    def decide(verb: str) -> Callable[[str, Decision, Viewer], Any]:
        def handler(case_id: str, body: Decision, who: Viewer = caller) -> Any:
            try:
                visible(case_id, who)
                case = getattr(service(), verb)(
                    case_id, actor=_actor(who, body.actor), now=body.at, note=body.note
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
    def comment(case_id: str, body: CommentBody, who: Viewer = caller) -> Any:
        try:
            visible(case_id, who)
            actor = _actor(who, body.actor)
            return service().comment(case_id, body.text, actor=actor, now=body.at).to_dict()
        except CaseError as exc:
            return _problem(exc)

    @r.post("/cases/{case_id}/assign")
    def assign(case_id: str, body: AssignBody, who: Viewer = caller) -> Any:
        try:
            visible(case_id, who)
            actor = _actor(who, body.actor)
            case = service().assign(case_id, body.assignee, actor=actor, now=body.at)
        except CaseError as exc:
            return _problem(exc)
        return case.to_dict()

    return r
