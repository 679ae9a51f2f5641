"""Redis over TLS (rediss://): the pipelined authorize path and quota leases, against a
real redis-server started here with TLS and a certificate made for the test."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tollguard.limits.leases import LeasingRedisState
from tollguard.limits.redis_pipe import PipelinedRedis
from tollguard.limits.redis_state import RedisState

from .conftest import answers
from .test_leases import listening, request


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(d: Path) -> None:
    """A CA, and a server certificate it signed for 127.0.0.1."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tollguard test CA",
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=d,
    )
    # another CA, which did not sign the server's certificate
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out",
             "other.pem", "-days", "2", "-subj", "/CN=some other CA", cwd=d)  # fmt: skip


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """redis-server with only a TLS port (no client certificates asked)."""
    for tool in ("redis-server", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(f"these tests need {tool} (Debian: apt-get install {tool})")
    d = tmp_path_factory.mktemp("tls")
    _certificates(d)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", "server.pem", "--tls-key-file", "server.key",
         "--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no"],
        cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        client = redis.Redis.from_url(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={d / 'ca.pem'}")
        if not answers(client, seconds=10.0):
            pytest.fail("redis-server with TLS did not come up (is it built with TLS?)")
        yield port, d
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_authorize_goes_over_the_pipelined_connection_with_tls(tls_redis: tuple[int, Path]) -> None:
    port, d = tls_redis
    state = RedisState(f"rediss://127.0.0.1:{port}/1?ssl_ca_certs={d / 'ca.pem'}")
    try:

        async def run() -> bool:
            r = await state.reserve_async(request("tls-1"))
            pipe = state._pipe
            assert pipe is not None and pipe._transport is not None
            assert pipe._transport.get_extra_info("ssl_object") is not None  # really TLS
            return r.ok

        assert asyncio.run(run())
        assert state.get_call("tls-1") is not None  # and the blocking client sees it
    finally:
        state.close()


def test_a_certificate_from_another_ca_is_refused(tls_redis: tuple[int, Path]) -> None:
    port, d = tls_redis
    pipe = PipelinedRedis(f"rediss://127.0.0.1:{port}/1?ssl_ca_certs={d / 'other.pem'}")

    async def run() -> None:
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await pipe.execute([b"PING"])

    asyncio.run(run())
    pipe.close()


def test_quota_leases_over_tls(tls_redis: tuple[int, Path]) -> None:
    port, d = tls_redis
    url = f"rediss://127.0.0.1:{port}/2?ssl_ca_certs={d / 'ca.pem'}"
    redis.Redis.from_url(url).flushdb()
    s = LeasingRedisState(url, calls=10, share=4)
    try:

        async def run() -> None:
            await listening(s)
            for i in range(12):
                assert (await s.reserve_async(request(f"tl{i}"))).ok
            await s.drain()

        asyncio.run(run())
        assert s.granted >= 1 and s.leased_decisions >= 10
        assert s.read_counts(["tg:{a}:cd:1"]) == [12]
    finally:
        s.close()
