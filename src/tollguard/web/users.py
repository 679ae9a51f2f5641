"""Dashboard users: a TOML file of names, roles and scrypt password hashes.

Users file (``--users`` or ``TOLLGUARD_USERS_FILE``)::

    [[users]]
    name = "alice"
    role = "admin"                      # admin | analyst | customer
    password = "scrypt$16384$8$1$<salt hex>$<hash hex>"

    [[users]]
    name = "hoek"
    role = "customer"
    accounts = ["hoek-techniek"]        # glob patterns; a customer sees only these

Passwords are never stored: ``tollguard users add`` writes the scrypt hash.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("admin", "analyst", "customer")
# scrypt cost: n=2**14, r=8, p=1 (16 MiB, about 50 ms): the OWASP minimum for scrypt.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class UsersError(ValueError):
    pass


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    if not password:
        raise UsersError("empty password")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest) // 2,
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got.hex(), digest)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    accounts: tuple[str, ...] = ()
    password: str = field(default="", repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def can_block(self) -> bool:
        return self.role in ("admin", "analyst")

    @property
    def can_edit_limits(self) -> bool:
        return self.role == "admin"

    @property
    def can_work_cases(self) -> bool:
        return self.role in ("admin", "analyst")

    def sees(self, account: str) -> bool:
        if self.role != "customer":
            return True
        return any(fnmatch.fnmatchcase(account, p) for p in self.accounts)


# A password check against this hash takes as long as a real one: an unknown user name
# and a wrong password answer in the same time.
_DUMMY = hash_password("tollguard-dummy-password")


class UserStore:
    def __init__(self, users: dict[str, User], path: Path | None = None) -> None:
        self.users = users
        self.path = path

    @classmethod
    def load(cls, path: str | Path) -> UserStore:
        path = Path(path)
        if not path.exists():
            return cls({}, path)
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UsersError(f"{path}: cannot read users file: {exc}") from None
        return cls(parse_users(data, str(path)), path)

    def authenticate(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        if user is None:
            verify_password(password, _DUMMY)
            return None
        return user if verify_password(password, user.password) else None

    def get(self, name: str) -> User | None:
        return self.users.get(name)

    def add(self, name: str, role: str, password: str, accounts: list[str]) -> User:
        """Add or replace a user and write the file (other users are kept as they are)."""
        if not name or any(c in name for c in '"\\\n'):
            raise UsersError(f"bad user name {name!r}")
        if role not in ROLES:
            raise UsersError(f"role must be one of {list(ROLES)}")
        if role == "customer" and not accounts:
            raise UsersError("a customer needs --account (the accounts it may see)")
        user = User(name, role, tuple(accounts), hash_password(password))
        self.users[name] = user
        if self.path is not None:
            self.save(self.path)
        return user

    def save(self, path: Path) -> None:
        lines = ["# tollguard dashboard users (`tollguard users add`); scrypt hashes only.", ""]
        for user in self.users.values():
            lines.append("[[users]]")
            lines.append(f'name = "{user.name}"')
            lines.append(f'role = "{user.role}"')
            if user.accounts:
                quoted = ", ".join(_toml_str(a) for a in user.accounts)
                lines.append(f"accounts = [{quoted}]")
            lines.append(f'password = "{user.password}"')
            lines.append("")
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("\n".join(lines), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(path)


def parse_users(data: dict[str, Any], source: str = "<users>") -> dict[str, User]:
    out: dict[str, User] = {}
    for i, spec in enumerate(data.get("users") or []):
        where = f"{source}: users[{i}]"
        if not isinstance(spec, dict):
            raise UsersError(f"{where}: must be a table")
        name, role, pw = spec.get("name"), spec.get("role"), spec.get("password")
        accounts = spec.get("accounts") or []
        if not isinstance(name, str) or not name:
            raise UsersError(f"{where}.name: required")
        if role not in ROLES:
            raise UsersError(f"{where}.role: {role!r}; use one of {list(ROLES)}")
        if not isinstance(pw, str) or not pw.startswith("scrypt$"):
            raise UsersError(f"{where}.password: must be a scrypt hash (`tollguard users add`)")
        if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
            raise UsersError(f"{where}.accounts: must be a list of account patterns")
        if role == "customer" and not accounts:
            raise UsersError(f"{where}.accounts: a customer must name its accounts")
        out[name] = User(name, str(role), tuple(accounts), pw)
    return out


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
