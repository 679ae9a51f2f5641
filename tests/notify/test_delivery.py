"""Webhook and mail delivery against real loopback servers; routing; dead letters."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tollguard.cases import audit
from tollguard.cases.service import CaseService
from tollguard.notify.dispatch import Notifier
from tollguard.notify.mail import MailSender, SmtpSettings
from tollguard.notify.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Backoff,
    SignatureError,
    WebhookSender,
    sign,
    verify_signature,
)
from tollguard.policy import Policy, parse_policy

from ..cases.conftest import T0, MakeAlert
from .conftest import Auth, Receiver, SmtpServer, message_of

SECRET = "whsec-test-1"


def no_sleep(_: float) -> None:
    pass


def test_sign_and_verify_roundtrip() -> None:
    body = b'{"a":1}'
    sig = sign(SECRET, 1_700_000_000, body)
    verify_signature(SECRET, body, "1700000000", sig, now=1_700_000_100)
    with pytest.raises(SignatureError, match="replay"):
        verify_signature(SECRET, body, "1700000000", sig, now=1_700_001_000)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(SECRET, body + b" ", "1700000000", sig, now=1_700_000_000)
    with pytest.raises(SignatureError):
        verify_signature("other", body, "1700000000", sig, now=1_700_000_000)


def test_webhook_retries_with_backoff_then_succeeds(receiver: Receiver) -> None:
    receiver.fail_first = 2
    slept: list[float] = []
    sender = WebhookSender(backoff=Backoff(attempts=4, base_s=0.5), sleep=slept.append)
    d = sender.send(receiver.url, b"{}", secret=SECRET, event="test", delivery_id="N-1")
    assert d.ok and d.attempts == 3
    assert slept == [0.5, 1.0]
    assert len(receiver.requests) == 3


def test_webhook_4xx_is_final(receiver: Receiver) -> None:
    receiver.status = 400
    sender = WebhookSender(backoff=Backoff(attempts=4), sleep=no_sleep)
    d = sender.send(receiver.url, b"{}", secret=SECRET, event="test", delivery_id="N-1")
    assert not d.ok and d.attempts == 1 and d.status_code == 400


def _policy(receiver_url: str, smtp_to: str = "it@acme.example") -> Policy:
    return parse_policy(
        {
            "defaults": {
                "operators": [{"name": "NOC", "webhook": receiver_url, "min_severity": "warning"}]
            },
            "accounts": {
                "acme": {
                    "contacts": [{"name": "ACME IT", "email": smtp_to, "min_severity": "warning"}],
                    "escalation": {
                        "after_minutes": 30,
                        "contacts": [{"name": "duty manager", "email": "duty@op.example"}],
                    },
                }
            },
        }
    )


def test_case_notifies_customer_by_mail_and_operator_by_signed_webhook(
    engine: Engine,
    make_alert: MakeAlert,
    receiver: Receiver,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOLLGUARD_WEBHOOK_SECRET", SECRET)
    policy = _policy(receiver.url)
    mail = MailSender(
        SmtpSettings.from_url(
            f"smtp://{smtp_server.host}:{smtp_server.port}?from=alerts@op.example"
        ),
        sleep=no_sleep,
    )
    notifier = Notifier(
        engine,
        policy,
        mail=mail,
        webhook=WebhookSender(sleep=no_sleep),
    )
    svc = CaseService(engine, policy=policy, notifier=notifier)
    result = svc.ingest(make_alert())
    assert result.notified
    case = svc.get(result.case.id)
    assert case.first_notified_at == T0 + timedelta(minutes=10)

    # webhook: signed, verifiable by the receiver with the shared secret
    [req] = receiver.requests
    verify_signature(SECRET, req.body, req.headers[TIMESTAMP_HEADER], req.headers[SIGNATURE_HEADER])
    payload = json.loads(req.body)
    assert payload["event"] == "case.opened"
    assert payload["case"]["id"] == case.id
    assert payload["alert"]["explanation"]["why"] == "first calls ever to Timor-Leste"

    # mail: received by the local SMTP server, to the customer
    [env] = smtp_server.collector.messages
    assert env.rcpt_tos == ["it@acme.example"]
    msg = message_of(env)
    assert case.id in str(msg["Subject"])
    assert "Timor-Leste" in msg.get_content()

    # escalation: not acknowledged after 30 minutes -> duty manager + operator
    svc.escalate_due(T0 + timedelta(minutes=45))
    assert [m.rcpt_tos for m in smtp_server.collector.messages][-1] == ["duty@op.example"]
    assert json.loads(receiver.requests[-1].body)["event"] == "case.escalated"
    with engine.connect() as conn:
        assert audit.verify_db(conn).ok
        actions = [e.action for e in audit.read(conn)]
    assert actions.count("notification.sent") == 4


def test_failed_delivery_goes_to_dead_letters_and_replays(
    engine: Engine,
    make_alert: MakeAlert,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOLLGUARD_WEBHOOK_SECRET", SECRET)
    receiver.fail_first = 3
    policy = parse_policy({"defaults": {"operators": [{"webhook": receiver.url}]}})
    slept: list[float] = []
    notifier = Notifier(
        engine, policy, webhook=WebhookSender(backoff=Backoff(attempts=3), sleep=slept.append)
    )
    svc = CaseService(engine, policy=policy, notifier=notifier)
    r = svc.ingest(make_alert())
    assert not r.notified
    assert svc.get(r.case.id).first_notified_at is None
    [dead] = notifier.dead_letters()
    assert dead.attempts == 3 and "503" in (dead.last_error or "")
    assert slept == [1.0, 2.0]
    [again] = notifier.replay(now=T0 + timedelta(hours=1))
    assert again.status == "sent" and again.attempts == 4
    assert notifier.dead_letters() == []
    # same delivery id on the replay: receivers can drop duplicates
    ids = {req.headers["X-Tollguard-Delivery"] for req in receiver.requests}
    assert ids == {dead.id}


def test_mail_without_smtp_is_a_dead_letter_not_lost(engine: Engine, make_alert: MakeAlert) -> None:
    policy = parse_policy({"accounts": {"acme": {"contacts": [{"email": "x@acme.example"}]}}})
    notifier = Notifier(engine, policy)
    CaseService(engine, policy=policy, notifier=notifier).ingest(make_alert())
    [dead] = notifier.dead_letters()
    assert "SMTP" in (dead.last_error or "")


def test_severity_routing(engine: Engine, make_alert: MakeAlert, receiver: Receiver) -> None:
    policy = parse_policy(
        {
            "accounts": {
                "acme": {
                    "contacts": [
                        {
                            "name": "only critical",
                            "webhook": receiver.url,
                            "min_severity": "critical",
                        }
                    ]
                }
            }
        }
    )
    svc = CaseService(engine, policy=policy, notifier=Notifier(engine, policy))
    svc.ingest(make_alert())  # warning: not sent
    assert receiver.requests == []
    svc.ingest(make_alert(id="a2", severity="critical", minutes=20))  # raises the case
    [req] = receiver.requests
    assert json.loads(req.body)["event"] == "case.severity_raised"


def test_mail_starttls_with_login(
    smtp_starttls: tuple[SmtpServer, Auth], tls_cert: tuple[Path, Path]
) -> None:
    server, auth = smtp_starttls
    settings = SmtpSettings.from_url(
        f"smtp+starttls://alerts:s3cret@{server.host}:{server.port}"
        f"?from=alerts@op.example&cafile={tls_cert[0]}"
    )
    sender = MailSender(settings, sleep=no_sleep)
    d = sender.send(sender.build(["noc@op.example"], "hello", "body"))
    assert d.ok, d.error
    assert auth.logins == ["alerts"]
    assert server.collector.messages[0].rcpt_tos == ["noc@op.example"]
    bad = MailSender(
        SmtpSettings.from_url(
            f"smtp+starttls://alerts:wrong@{server.host}:{server.port}?cafile={tls_cert[0]}"
        ),
        sleep=no_sleep,
    )
    d2 = bad.send(bad.build(["noc@op.example"], "x", "y"))
    assert not d2.ok and d2.status_code == 535 and d2.attempts == 1
