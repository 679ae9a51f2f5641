"""NATS consumer details: ack subjects, and an existing durable consumer's settings."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.aio.msg import Msg

from tollguard.ingest.nats_source import NatsOptions, _ensure_consumer, stream_sequence
from tollguard.store.testing import ensure_nats


def test_stream_sequence_from_both_ack_subject_layouts() -> None:
    v1 = "$JS.ACK.CDRS.tollguard.1.4711.12.1795474753015014459.3"
    v2 = "$JS.ACK.hub.ACCHASH.CDRS.tollguard.2.4712.13.1795474753015014459.0.tok"
    for reply, seq in ((v1, 4711), (v2, 4712)):
        msg = Msg(_client=None, subject="cdrs.a", reply=reply, data=b"")  # type: ignore[arg-type]
        assert stream_sequence(msg) == seq == msg.metadata.sequence.stream


async def _consumer_settings(old: dict[str, object], options: NatsOptions) -> tuple[float, int]:
    import nats
    from nats.js.api import ConsumerConfig

    nc = await nats.connect(options.servers)
    js = nc.jetstream()
    try:
        await js.add_stream(name=options.stream, subjects=[options.subject])
        config = ConsumerConfig(
            name=options.durable, durable_name=options.durable, filter_subject=options.subject,
            **old,  # type: ignore[arg-type]
        )  # fmt: skip
        await js.add_consumer(options.stream, config)
        await _ensure_consumer(js, options)
        info = await js.consumer_info(options.stream, options.durable)
        return float(info.config.ack_wait or 0), int(info.config.max_ack_pending or 0)
    finally:
        await js.delete_stream(options.stream)
        await nc.close()


def _options() -> NatsOptions:
    name = f"TGCONS_{uuid.uuid4().hex[:10].upper()}"
    return NatsOptions(
        servers=ensure_nats(), stream=name, subject=f"{name.lower()}.>", durable="c", batch=500
    )


def test_existing_consumer_gets_ack_wait_and_max_ack_pending_brought_up_to_date() -> None:
    from nats.js.api import AckPolicy

    options = _options()
    old = {"ack_policy": AckPolicy.EXPLICIT, "ack_wait": 60.0, "max_ack_pending": 1000}
    ack_wait, max_ack_pending = asyncio.run(_consumer_settings(old, options))
    assert ack_wait == options.ack_wait
    assert max_ack_pending == options.ack_pending_limit == 20_000


def test_consumer_acknowledging_all_is_refused() -> None:
    from nats.js.api import AckPolicy

    with pytest.raises(RuntimeError, match="explicit acks"):
        asyncio.run(_consumer_settings({"ack_policy": AckPolicy.ALL}, _options()))
