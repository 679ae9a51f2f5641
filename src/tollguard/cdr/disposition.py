"""How each switch's way of saying "what happened to the call" maps to ``Disposition``.

Four vocabularies, one vectorized mapping each:

* ``asterisk``: the Asterisk ``disposition`` column (ANSWERED, NO ANSWER, BUSY, FAILED,
  CONGESTION, CANCEL/CANCELLED). Anything else is an error (the line is quarantined).
* ``q850``: FreeSWITCH ``hangup_cause`` names. A call counts as answered iff billsec > 0
  or an answer time is present, whatever the cause; otherwise the cause decides
  (USER_BUSY busy, NO_ANSWER/NO_USER_RESPONSE/ALLOTTED_TIMEOUT no answer,
  ORIGINATOR_CANCEL cancelled, *_CONGESTION congestion, NORMAL_CLEARING no answer,
  any other cause name failed).
* ``sip``: a SIP final response code (Kamailio/OpenSIPS ``sip_code``): 2xx answered,
  486/600/603 busy, 480/408 no answer, 487 cancelled, 503 congestion, others failed.
* ``any``: for mapped CSV and JSON Lines: accepts any of the above plus tollguard's own
  values (``answered``, ``no_answer``...). A missing value means answered iff billsec > 0.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from tollguard.cdr.model import Disposition

DispositionMode = Literal["asterisk", "q850", "sip", "any"]

ANSWERED = Disposition.ANSWERED.value
NO_ANSWER = Disposition.NO_ANSWER.value
BUSY = Disposition.BUSY.value
FAILED = Disposition.FAILED.value
CANCELLED = Disposition.CANCELLED.value
CONGESTION = Disposition.CONGESTION.value

ASTERISK_DISPOSITIONS: dict[str, str] = {
    "ANSWERED": ANSWERED,
    "NO ANSWER": NO_ANSWER,
    "BUSY": BUSY,
    "FAILED": FAILED,
    "CONGESTION": CONGESTION,
    "CANCEL": CANCELLED,
    "CANCELLED": CANCELLED,
    "CANCELED": CANCELLED,
}

# Q.850 cause names (as FreeSWITCH writes them) that mean something other than "failed".
Q850_DISPOSITIONS: dict[str, str] = {
    "NORMAL_CLEARING": NO_ANSWER,  # only reached when nothing shows the call was answered
    "USER_BUSY": BUSY,
    "NO_ANSWER": NO_ANSWER,
    "NO_USER_RESPONSE": NO_ANSWER,
    "ALLOTTED_TIMEOUT": NO_ANSWER,
    "ORIGINATOR_CANCEL": CANCELLED,
    "LOSE_RACE": CANCELLED,
    "NORMAL_CIRCUIT_CONGESTION": CONGESTION,
    "SWITCH_CONGESTION": CONGESTION,
}

# Well-known Q.850 names, used by format detection to recognise a hangup-cause column.
KNOWN_Q850 = frozenset(
    {
        *Q850_DISPOSITIONS,
        "UNALLOCATED_NUMBER",
        "NO_ROUTE_DESTINATION",
        "CALL_REJECTED",
        "NUMBER_CHANGED",
        "DESTINATION_OUT_OF_ORDER",
        "INVALID_NUMBER_FORMAT",
        "NORMAL_UNSPECIFIED",
        "NETWORK_OUT_OF_ORDER",
        "NORMAL_TEMPORARY_FAILURE",
        "REQUESTED_CHAN_UNAVAIL",
        "BEARERCAPABILITY_NOTAVAIL",
        "INCOMPATIBLE_DESTINATION",
        "RECOVERY_ON_TIMER_EXPIRE",
        "MEDIA_TIMEOUT",
        "PICKED_OFF",
        "MANAGER_REQUEST",
        "SUBSCRIBER_ABSENT",
        "EXCHANGE_ROUTING_ERROR",
        "UNKNOWN",
    }
)

Q850_SHAPE = r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$"

SIP_DISPOSITIONS: dict[str, str] = {
    "486": BUSY,
    "600": BUSY,
    "603": BUSY,
    "480": NO_ANSWER,
    "408": NO_ANSWER,
    "487": CANCELLED,
    "503": CONGESTION,
}

OWN_VALUES: dict[str, str] = {d.value.upper(): d.value for d in Disposition}
OWN_VALUES["CANCELED"] = CANCELLED


def _asterisk(cause: pl.Expr) -> pl.Expr:
    return cause.str.to_uppercase().replace_strict(ASTERISK_DISPOSITIONS, default=None)


def _q850(cause: pl.Expr, answered_evidence: pl.Expr) -> pl.Expr:
    upper = cause.str.to_uppercase()
    mapped = upper.replace_strict(Q850_DISPOSITIONS, default=None)
    return (
        pl.when(answered_evidence)
        .then(pl.lit(ANSWERED))
        .when(mapped.is_not_null())
        .then(mapped)
        .when(upper.str.contains(Q850_SHAPE) | cause.is_null())
        .then(pl.lit(FAILED))
        .otherwise(pl.lit(None, pl.String))
    )


def _sip(cause: pl.Expr) -> pl.Expr:
    code = cause.str.extract(r"^([1-6][0-9][0-9])(?:\D|$)", 1)
    return (
        pl.when(code.str.starts_with("2"))
        .then(pl.lit(ANSWERED))
        .when(code.is_not_null())
        .then(code.replace_strict(SIP_DISPOSITIONS, default=FAILED))
        .otherwise(pl.lit(None, pl.String))
    )


def disposition_expr(
    mode: DispositionMode, cause: pl.Expr, billsec: pl.Expr, answer_present: pl.Expr
) -> pl.Expr:
    """A Disposition value per row, or null when ``cause`` is not understood.

    ``cause`` is the stripped cause text (null when empty), ``billsec`` the billable
    seconds as written (nullable Int64), ``answer_present`` whether an answer time was
    written.
    """
    answered_evidence = (billsec.fill_null(0) > 0) | answer_present
    if mode == "asterisk":
        return _asterisk(cause)
    if mode == "q850":
        return _q850(cause, answered_evidence)
    if mode == "sip":
        return _sip(cause)
    upper = cause.str.to_uppercase()
    return (
        pl.when(cause.is_null())
        .then(pl.when(answered_evidence).then(pl.lit(ANSWERED)).otherwise(pl.lit(NO_ANSWER)))
        .otherwise(
            pl.coalesce(
                upper.replace_strict(OWN_VALUES, default=None),
                _asterisk(cause),
                _sip(cause),
                pl.when(upper.str.contains(Q850_SHAPE)).then(_q850(cause, answered_evidence)),
            )
        )
    )


def describe_mode(mode: DispositionMode) -> str:
    return {
        "asterisk": (
            "an Asterisk disposition (ANSWERED, NO ANSWER, BUSY, FAILED, CONGESTION, CANCEL)"
        ),
        "q850": "a Q.850 hangup cause name (NORMAL_CLEARING, USER_BUSY...)",
        "sip": "a SIP response code (200, 486, 487...)",
        "any": "a disposition, Q.850 cause name or SIP code",
    }[mode]
