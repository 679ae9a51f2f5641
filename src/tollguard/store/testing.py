"""Throw-away databases for tests: a SQLite file, or a private PostgreSQL schema.

    with temp_database("postgresql", tmp_path) as url:
        upgrade(url)
        ...

PostgreSQL defaults to 127.0.0.1:5432 database ``test`` (``TOLLGUARD_TEST_PG``
overrides the server URL). Each use gets its own schema (via ``search_path`` in the URL,
so subprocesses given the URL see the same tables), dropped afterwards. When the
server is down, it is started once with ``pg_ctlcluster``; if that fails the helper
raises, so a test fails loudly instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

PG_BASE = os.environ.get("TOLLGUARD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("TOLLGUARD_TEST_NATS", "nats://127.0.0.1:4222")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _wait_port(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _port_open(host, port):
            return True
        time.sleep(0.2)
    return False


def ensure_postgres() -> None:
    if _port_open("127.0.0.1", 5432):
        return
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if versions and shutil.which("pg_ctlcluster"):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
            check=False,
            timeout=60,
        )
    if not _wait_port("127.0.0.1", 5432, 30):
        raise RuntimeError(
            "PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started; start it "
            "with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )


def ensure_nats() -> str:
    if _port_open("127.0.0.1", 4222):
        return NATS_URL
    if os.path.exists("/usr/sbin/nats-server"):
        subprocess.run(
            [
                "start-stop-daemon", "--start", "--oknodo", "--background",
                "--exec", "/usr/sbin/nats-server", "--", "-a", "127.0.0.1", "-p", "4222",
                "-js", "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log",
            ],
            check=False,
            timeout=30,
        )  # fmt: skip
    if not _wait_port("127.0.0.1", 4222, 30):
        raise RuntimeError(
            "NATS (JetStream) is not reachable on 127.0.0.1:4222 and could not be started"
        )
    return NATS_URL


@contextmanager
def temp_database(kind: str, tmp_dir: Path) -> Iterator[str]:
    """Yield the URL of an empty database of ``kind`` ("sqlite" or "postgresql")."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_dir / f'store-{uuid.uuid4().hex[:8]}.db'}"
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database kind {kind!r}")
    ensure_postgres()
    schema = f"tg_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in PG_BASE else "?"
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
