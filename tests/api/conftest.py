"""An API over the test policy with three keys on two tenants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tollguard.api.app import create_app
from tollguard.api.auth import Keyring, hash_key
from tollguard.limits.memory import MemoryState
from tollguard.limits.service import AuthorizeService
from tollguard.policy import load_policy

DATA = Path(__file__).parents[1] / "limits" / "data"
KEYS = {"switch": "sw-secret", "analyst": "an-secret", "admin": "ad-secret", "other": "ot-secret"}


def keys_toml() -> str:
    return f"""
[tenants.main]
accounts = ["acme", "small", "calls-only", "typed", "watch", "free"]
[tenants.other]
accounts = ["other-*"]

[[keys]]
name = "kamailio-1"
role = "switch"
tenant = "main"
sha256 = "{hash_key(KEYS["switch"])}"

[[keys]]
name = "alice"
role = "analyst"
tenant = "main"
sha256 = "{hash_key(KEYS["analyst"])}"

[[keys]]
name = "root"
role = "admin"
tenant = "*"
sha256 = "{hash_key(KEYS["admin"])}"

[[keys]]
name = "other-switch"
role = "switch"
tenant = "other"
sha256 = "{hash_key(KEYS["other"])}"
"""


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(keys_toml())
    return path


@pytest.fixture
def make_client(keys_file: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(engine: Any = None) -> TestClient:
        service = AuthorizeService(load_policy(DATA / "policy.toml"), MemoryState())
        app = create_app(service, Keyring.load(keys_file), sweep_interval_s=0, engine=engine)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Any) -> TestClient:
    c: TestClient = make_client()
    return c
