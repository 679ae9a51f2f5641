"""Server-side sessions: opaque random ids in an HttpOnly, SameSite=Lax cookie.

The cookie carries only a random 256-bit id; user, role and CSRF token stay on the
server. Every POST must carry the session's CSRF token (form field ``csrf``); the login
form, before there is a session, uses a token bound to a random pre-login cookie by an
HMAC with the server's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE = "tg_session"
PRE_COOKIE = "tg_pre"


@dataclass
class Session:
    id: str
    user: str
    csrf: str
    expires: float


class SessionStore:
    def __init__(self, ttl_s: float = 8 * 3600, secret: bytes | None = None) -> None:
        self.ttl_s = ttl_s
        self.secret = secret or secrets.token_bytes(32)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> Session:
        now = time.time()
        session = Session(
            secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now + self.ttl_s
        )
        with self._lock:
            for sid in [k for k, s in self._sessions.items() if s.expires < now]:
                del self._sessions[sid]
            self._sessions[session.id] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if session.expires < time.time():
                del self._sessions[sid]
                return None
            return session

    def drop(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._sessions.pop(sid, None)

    def login_token(self, pre: str) -> str:
        return hmac.new(self.secret, b"login:" + pre.encode(), hashlib.sha256).hexdigest()

    def check_login_token(self, pre: str | None, token: str | None) -> bool:
        if not pre or not token:
            return False
        return hmac.compare_digest(self.login_token(pre), token)


def same_token(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
