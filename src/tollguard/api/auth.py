"""API keys with roles, scoped to tenants; keys are stored as SHA-256 hashes.

Keys file (TOML; ``--keys`` or ``TOLLGUARD_KEYS_FILE``)::

    [tenants.acme]
    accounts = ["acme-*", "pbx-1"]     # glob patterns of account ids

    [[keys]]
    name = "kamailio-edge-1"
    role = "switch"                    # switch | analyst | admin
    tenant = "acme"                    # or "*" for every account
    sha256 = "<hex sha256 of the key>" # `tollguard keys new` prints one

A key is sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. A key sees
only accounts of its tenant; any other account is answered as unknown.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLES = ("switch", "analyst", "admin")
PERMISSIONS: dict[str, frozenset[str]] = {
    "switch": frozenset({"authorize", "events", "cdrs"}),
    "analyst": frozenset({"read", "block", "cdrs", "cases"}),
    "admin": frozenset(
        {"authorize", "events", "cdrs", "read", "block", "policy", "reset", "cases"}
    ),
}
ALL_TENANTS = "*"


class KeysError(ValueError):
    pass


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_key() -> str:
    return "tg_" + secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    role: str
    tenant: str

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


class Keyring:
    def __init__(self, keys: dict[str, ApiKey], tenants: dict[str, list[str]]) -> None:
        self._by_hash = keys
        self.tenants = tenants
        self._seen: dict[tuple[str, str], bool] = {}

    @classmethod
    def open(cls) -> Keyring:
        """No authentication: every request is an admin of every tenant (development only)."""
        return cls({}, {})

    @property
    def enabled(self) -> bool:
        return bool(self._by_hash)

    @classmethod
    def load(cls, path: str | Path) -> Keyring:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise KeysError(f"{path}: cannot read keys file: {exc}") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: dict[str, Any], source: str = "<keys>") -> Keyring:
        tenants: dict[str, list[str]] = {}
        for name, spec in (data.get("tenants") or {}).items():
            accounts = spec.get("accounts") if isinstance(spec, dict) else None
            if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
                raise KeysError(f"{source}: tenants.{name}.accounts must be a list of patterns")
            tenants[name] = accounts
        keys: dict[str, ApiKey] = {}
        for i, spec in enumerate(data.get("keys") or []):
            where = f"{source}: keys[{i}]"
            if not isinstance(spec, dict):
                raise KeysError(f"{where}: must be a table")
            name, role, tenant = spec.get("name"), spec.get("role"), spec.get("tenant")
            digest = str(spec.get("sha256", "")).lower()
            if not isinstance(name, str) or not name:
                raise KeysError(f"{where}.name: required")
            if role not in ROLES:
                raise KeysError(f"{where}.role: {role!r}; use one of {list(ROLES)}")
            if not isinstance(tenant, str) or (tenant != ALL_TENANTS and tenant not in tenants):
                raise KeysError(f"{where}.tenant: {tenant!r} is not '*' or a [tenants.<name>]")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise KeysError(f"{where}.sha256: must be 64 hex digits (the key's SHA-256)")
            if digest in keys:
                raise KeysError(f"{where}: the same key is listed twice")
            keys[digest] = ApiKey(name, str(role), tenant)
        if not keys:
            raise KeysError(f"{source}: no [[keys]]")
        return cls(keys, tenants)

    def identify(self, raw: str | None) -> ApiKey | None:
        if not raw:
            return None
        # Looked up by SHA-256 of the presented key: the raw key is never stored or compared.
        return self._by_hash.get(hash_key(raw))

    def sees(self, key: ApiKey, account: str) -> bool:
        if key.tenant == ALL_TENANTS:
            return True
        memo = (key.tenant, account)
        hit = self._seen.get(memo)
        if hit is None:
            hit = any(fnmatch.fnmatchcase(account, p) for p in self.tenants.get(key.tenant, []))
            if len(self._seen) > 100_000:
                self._seen.clear()
            self._seen[memo] = hit
        return hit


DEV_KEY = ApiKey("no-auth", "admin", ALL_TENANTS)
