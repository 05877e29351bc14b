"""The county's operator accounts: who may log in to the console, with which role and scope.

Roles, widest first:
- `admin`: everything, and manages accounts and reads the audit trail;
- `county`: every station, figures and video (live view, clips, snapshots), acknowledges alerts;
- `township`: the same, but only for the stations of its township(s);
- `viewer`: figures only, never video; county-wide, or scoped when given townships.

Which township a station belongs to is data (`[townships]` in the console's config), not code:
an account's scope is a list of township names, resolved against that map on every request.

Passwords are hashed with Argon2id (argon2-cffi, its default parameters); the store keeps only
the hash. `gen` counts changes to an account (password, role, disabling): a session carries the
`gen` it was made with, so any change ends the account's open sessions at once.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from centre.webstore import WebStore

ROLES = ("admin", "county", "township", "viewer")
NAME = re.compile(r"^[\w.@-]{1,64}$")
TOWNSHIP = re.compile(r"^[\w-]{1,64}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # bounded before it is hashed: Argon2 over megabytes is a free DoS
# What each role may do: `figures` (pages and numbers), `video` (live view, clips, snapshots,
# commands to stations, acknowledging alerts), `admin` (accounts, audit trail).
PERMISSIONS = {
    "admin": frozenset({"figures", "video", "admin"}),
    "county": frozenset({"figures", "video"}),
    "township": frozenset({"figures", "video"}),
    "viewer": frozenset({"figures"}),
}

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS accounts (
        name TEXT PRIMARY KEY, hash TEXT NOT NULL, role TEXT NOT NULL, townships TEXT NOT NULL,
        disabled BOOLEAN NOT NULL, gen BIGINT NOT NULL, created DOUBLE PRECISION NOT NULL,
        changed DOUBLE PRECISION NOT NULL)""",
]


class AccountError(ValueError):
    """A request about an account that cannot be done; the message says what to change."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    townships: tuple[str, ...]
    disabled: bool
    gen: int

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())

    @property
    def scoped(self) -> bool:
        """Township accounts always, viewers when given townships; admin and county never."""
        return self.role == "township" or (self.role == "viewer" and bool(self.townships))

    def sees(self, station: str, township_of: dict[str, str]) -> bool:
        return not self.scoped or township_of.get(station) in self.townships

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "role": self.role, "townships": list(self.townships), "disabled": self.disabled}


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    return password


def check_role(role: str, townships: list[str] | tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    if role not in ROLES:
        raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if len(townships) > 100 or not all(isinstance(t, str) and TOWNSHIP.match(t) for t in townships):
        raise AccountError("townships: at most 100 names of letters, digits, _ or -")
    if role == "township" and not townships:
        raise AccountError("a township account needs at least one township (--township NAME)")
    if role in ("admin", "county") and townships:
        raise AccountError(f"a {role} account sees every station: give it no townships")
    return role, tuple(sorted(set(townships)))


class Accounts:
    def __init__(self, db: WebStore) -> None:
        self.db = db
        self.hasher = PasswordHasher()
        db.ensure(SCHEMA)
        # Hashed once so that a login for an unknown name costs what a wrong password costs.
        self._dummy = self.hasher.hash("not a password of anyone")

    @staticmethod
    def _user(row: tuple) -> User:
        name, role, townships, disabled, gen = row
        return User(name, role, tuple(t for t in townships.split(",") if t), bool(disabled), int(gen))

    def get(self, name: str) -> User | None:
        row = self.db.one("SELECT name, role, townships, disabled, gen FROM accounts WHERE name = ?", (name,))
        return self._user(row) if row else None

    def list(self) -> list[User]:
        return [
            self._user(r)
            for r in self.db.rows("SELECT name, role, townships, disabled, gen FROM accounts ORDER BY name")
        ]

    def add(self, name: str, password: str, role: str, townships: list[str] | tuple[str, ...] = ()) -> User:
        if not NAME.match(name):
            raise AccountError(f"user name {name!r}: 1 to 64 letters, digits, or . @ _ -")
        role, towns = check_role(role, townships)
        digest = self.hasher.hash(check_password(password))
        now = time.time()
        if self.get(name) is not None:
            raise AccountError(f"user {name!r} exists already: use passwd, or another name")
        self.db.execute(
            "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
            (name, digest, role, ",".join(towns), False, now, now),
        )
        return User(name, role, towns, False, 0)

    def _change(self, name: str, sql: str, params: tuple) -> User:
        touched = self.db.execute(
            f"UPDATE accounts SET {sql}, gen = gen + 1, changed = ? WHERE name = ?", (*params, time.time(), name)
        )
        if not touched:
            raise AccountError(f"no user {name!r} (see `yimen centre user list`)")
        user = self.get(name)
        assert user is not None
        return user

    def set_password(self, name: str, password: str) -> User:
        return self._change(name, "hash = ?", (self.hasher.hash(check_password(password)),))

    def set_disabled(self, name: str, disabled: bool) -> User:
        return self._change(name, "disabled = ?", (disabled,))

    def set_role(self, name: str, role: str, townships: list[str] | tuple[str, ...]) -> User:
        role, towns = check_role(role, townships)
        return self._change(name, "role = ?, townships = ?", (role, ",".join(towns)))

    def verify(self, name: str, password: str) -> User | None:
        """The account when the password is right and the account enabled; None otherwise,
        after the same Argon2 work either way."""
        if len(password) > MAX_PASSWORD:
            return None  # no account has one so long; refused before any hashing
        row = self.db.one("SELECT hash FROM accounts WHERE name = ?", (name,)) if NAME.match(name) else None
        digest = row[0] if row else self._dummy
        try:
            self.hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return None
        user = self.get(name) if row else None
        if user is None or user.disabled:
            return None
        if self.hasher.check_needs_rehash(digest):
            self.db.execute("UPDATE accounts SET hash = ? WHERE name = ?", (self.hasher.hash(password), name))
        return user
