"""Webhook delivery: a signed JSON POST, retried with exponential backoff.

Headers sent with every delivery (see docs/notifications.md):

- ``X-Tollguard-Event``: ``case.opened``, ``case.reopened``, ``case.severity_raised``,
  ``case.escalated``, ``test``
- ``X-Tollguard-Delivery``: the notification id (the same on every retry and replay, so
  a receiver can drop duplicates)
- ``X-Tollguard-Timestamp``: Unix time (seconds) of this attempt
- ``X-Tollguard-Signature``: ``v1=`` + hex HMAC-SHA256(secret, ``"{timestamp}." + body``)

A receiver recomputes the HMAC over the exact raw body bytes, compares in constant time,
and refuses a timestamp more than five minutes from its clock (replay protection).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

SIGNATURE_HEADER = "X-Tollguard-Signature"
TIMESTAMP_HEADER = "X-Tollguard-Timestamp"
EVENT_HEADER = "X-Tollguard-Event"
DELIVERY_HEADER = "X-Tollguard-Delivery"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """``v1=<hex>``: HMAC-SHA256 over ``b"<timestamp>." + body``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    mac = hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


class SignatureError(ValueError):
    pass


def verify_signature(
    secret: str | bytes,
    body: bytes,
    timestamp: str | int,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise ``SignatureError`` unless ``signature`` is valid for ``body`` and
    ``timestamp`` lies within ``tolerance_s`` of ``now`` (default: the clock).
    ``signature`` may hold several comma-separated values (during secret rotation)."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        raise SignatureError(f"bad timestamp {timestamp!r}") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise SignatureError(f"timestamp {ts} is more than {tolerance_s}s from now: replay?")
    expected = sign(secret, ts, body)
    for candidate in (part.strip() for part in signature.split(",")):
        if hmac.compare_digest(candidate, expected):
            return
    raise SignatureError("signature does not match")


@dataclass(slots=True)
class Delivery:
    ok: bool
    attempts: int
    status_code: int | None = None
    error: str = ""
    retryable: bool = True


@dataclass
class Backoff:
    """Delays between attempts: ``base * factor**n``, capped; ``attempts`` in total."""

    attempts: int = 5
    base_s: float = 1.0
    factor: float = 2.0
    max_s: float = 60.0

    def delays(self) -> list[float]:
        return [min(self.base_s * self.factor**n, self.max_s) for n in range(self.attempts - 1)]


class WebhookSender:
    """POSTs signed JSON; retries connection errors, timeouts, 408, 425, 429 and 5xx.

    Other 4xx answers are final (the receiver refused this payload; retrying the same
    bytes will not help) and go to the dead-letter list at once. ``sleep`` and ``clock``
    are injectable so tests do not wait.
    """

    RETRY_STATUS = frozenset({408, 425, 429})

    def __init__(
        self,
        *,
        backoff: Backoff | None = None,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backoff = backoff or Backoff()
        self.client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self.sleep = sleep
        self.clock = clock

    def send(
        self,
        url: str,
        body: bytes,
        *,
        secret: str | None,
        event: str,
        delivery_id: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Delivery:
        delays = self.backoff.delays()
        last = Delivery(False, 0, error="not attempted")
        for attempt in range(1, self.backoff.attempts + 1):
            ts = int(self.clock())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "tollguard-webhook/1",
                EVENT_HEADER: event,
                DELIVERY_HEADER: delivery_id,
                TIMESTAMP_HEADER: str(ts),
                **(extra_headers or {}),
            }
            if secret:
                headers[SIGNATURE_HEADER] = sign(secret, ts, body)
            try:
                response = self.client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                last = Delivery(False, attempt, None, f"{type(exc).__name__}: {exc}", True)
            else:
                code = response.status_code
                if 200 <= code < 300:
                    return Delivery(True, attempt, code)
                retryable = code >= 500 or code in self.RETRY_STATUS
                last = Delivery(
                    False, attempt, code, f"HTTP {code}: {response.text[:200]}", retryable
                )
                if not retryable:
                    return last
            if attempt <= len(delays):
                self.sleep(delays[attempt - 1])
        return last

    def close(self) -> None:
        self.client.close()
