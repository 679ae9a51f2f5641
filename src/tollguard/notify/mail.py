"""E-mail over SMTP (stdlib ``smtplib``/``email``): plain, STARTTLS or implicit TLS, with
login, retried with the same backoff as webhooks.

Configure with one URL (``$TOLLGUARD_SMTP_URL`` or ``--smtp``)::

    smtp://mail.example.net:25                       plain (a local relay)
    smtp+starttls://user:pass@mail.example.net:587   STARTTLS, then AUTH LOGIN/PLAIN
    smtps://user:pass@mail.example.net:465           TLS from the first byte

Query parameters: ``from=alerts@example.net`` (sender), ``timeout=10`` (seconds),
``cafile=/path/ca.pem`` (trust this CA). The password may come from
``$TOLLGUARD_SMTP_PASSWORD`` instead of the URL.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from tollguard.notify.webhook import Backoff, Delivery

Security = Literal["none", "starttls", "ssl"]
_SCHEMES: dict[str, tuple[Security, int]] = {
    "smtp": ("none", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("ssl", 465),
}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: Security = "none"
    username: str | None = None
    password: str | None = None
    sender: str = "tollguard@localhost"
    timeout_s: float = 10.0
    cafile: str | None = None

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ValueError(f"SMTP URL {url!r}: scheme must be one of {', '.join(_SCHEMES)}")
        if not parts.hostname:
            raise ValueError(f"SMTP URL {url!r} has no host")
        security, default_port = _SCHEMES[parts.scheme]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        password = unquote(parts.password) if parts.password else None
        return cls(
            host=parts.hostname,
            port=parts.port or default_port,
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=password or os.environ.get("TOLLGUARD_SMTP_PASSWORD"),
            sender=query.get("from", "tollguard@localhost"),
            timeout_s=float(query.get("timeout", "10")),
            cafile=query.get("cafile"),
        )

    @classmethod
    def from_env(cls) -> SmtpSettings | None:
        url = os.environ.get("TOLLGUARD_SMTP_URL")
        return cls.from_url(url) if url else None

    def describe(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{self.security}://{user}{self.host}:{self.port}"


class MailSender:
    """Sends one message per call; retries temporary failures (4xx, dropped connections)."""

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.ssl_context = ssl_context or ssl.create_default_context(cafile=settings.cafile)

    def build(
        self,
        to: Sequence[str],
        subject: str,
        text: str,
        *,
        html: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.sender
        msg["To"] = ", ".join(to)
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain="tollguard")
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(text)
        if html:
            msg.add_alternative(html, subtype="html")
        return msg

    def send(self, msg: EmailMessage) -> Delivery:
        delays = self.backoff.delays()
        last = Delivery(False, 0, error="not attempted")
        for attempt in range(1, self.backoff.attempts + 1):
            try:
                self._send_once(msg)
                return Delivery(True, attempt)
            except smtplib.SMTPResponseException as exc:
                retryable = 400 <= exc.smtp_code < 500
                last = Delivery(
                    False, attempt, exc.smtp_code, f"SMTP {exc.smtp_code}: {_text(exc)}", retryable
                )
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                retryable = all(400 <= c < 500 for c in codes)
                last = Delivery(
                    False, attempt, None, f"recipients refused: {exc.recipients}", retryable
                )
            except (smtplib.SMTPException, OSError) as exc:
                last = Delivery(False, attempt, None, f"{type(exc).__name__}: {exc}", True)
            if not last.retryable:
                return last
            if attempt <= len(delays):
                self.sleep(delays[attempt - 1])
        return last

    def _send_once(self, msg: EmailMessage) -> None:
        s = self.settings
        client: smtplib.SMTP
        if s.security == "ssl":
            client = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=self.ssl_context)
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        with client:
            client.ehlo()
            if s.security == "starttls":
                client.starttls(context=self.ssl_context)
                client.ehlo()
            if s.username:
                client.login(s.username, s.password or "")
            client.send_message(msg)


def _text(exc: smtplib.SMTPResponseException) -> str:
    err = exc.smtp_error
    return err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
