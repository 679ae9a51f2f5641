"""Request and response bodies of the HTTP API (they are the published OpenAPI schemas)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tollguard.policy import Limits

NUMBER_PATTERN = r"^\+?[0-9*#]{1,32}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AuthorizeRequest(_In):
    account: str = Field(min_length=1, max_length=128, description="Who pays (accountcode, trunk).")
    caller: str = Field(max_length=64, description="A-number as the switch sees it; may be empty.")
    callee: str = Field(
        min_length=1,
        max_length=33,
        pattern=NUMBER_PATTERN,
        description="B-number as dialed: digits, optional leading +, * and #.",
    )
    call_id: str = Field(min_length=1, max_length=256, description="SIP Call-ID or channel id.")
    at: AwareDatetime | None = Field(
        default=None, description="Event time (with offset); default: the server clock."
    )


class LimitInfo(BaseModel):
    name: str
    limit: str | int


class AuthorizeResponse(BaseModel):
    decision: Literal["allow", "deny"]
    reason: str
    max_duration_s: int
    call_id: str
    account: str
    rate: dict[str, Any] | None
    number: dict[str, Any] | None
    limits: list[LimitInfo]
    warnings: list[dict[str, Any]]
    detail: dict[str, Any]
    report_only: bool
    fail_mode: Literal["open", "closed"]


class AnswerRequest(_In):
    at: AwareDatetime | None = None


class EndRequest(_In):
    billsec: int | None = Field(default=None, ge=0, le=7 * 86400)
    answered: bool | None = None
    at: AwareDatetime | None = Field(default=None, description="When the call ended.")


class CallResponse(BaseModel):
    call_id: str
    account: str
    state: str
    reserved: str
    cost: str | None
    status: str | None = None


class BlockRequest(_In):
    reason: str = Field(min_length=1, max_length=500)


class PolicyUpdate(_In):
    limits: Limits
    report_only: bool | None = None
    on_critical: Literal["alert", "block"] | None = None
    fail_mode: Literal["open", "closed"] | None = None


class CdrIn(_In):
    record_id: str | None = Field(default=None, max_length=256)
    account: str = Field(min_length=1, max_length=128)
    caller: str = Field(default="", max_length=64)
    callee: str = Field(min_length=1, max_length=64)
    start: AwareDatetime
    answer: AwareDatetime | None = None
    end: AwareDatetime | None = None
    duration: int | None = Field(default=None, ge=0)
    billsec: int = Field(default=0, ge=0)
    disposition: Literal["answered", "no_answer", "busy", "failed", "cancelled", "congestion"] = (
        "answered"
    )
    hangup_cause: str = ""
