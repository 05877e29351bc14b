"""The county's registry of stations: one SQLite file, readable only by its owner.

It holds the registrar's own settings (its broker logins and the console's, hence mode
0600), every station with its state, and claim tokens. Tokens are stored as SHA-256 hashes:
a copied registry yields no usable claim. Each claim has its own broker login (the token is
its password); the registry says when that login must go (`stale_logins`). A token is consumed by one
conditional UPDATE, so two requests racing with the same token cannot both win.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stations (
    station TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,            -- pending | enrolled | revoked
    username TEXT,
    serial TEXT,
    public_key TEXT,
    inventory TEXT,
    enrolled_at REAL,
    revoked_at REAL,
    last_status TEXT,
    last_status_at REAL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    station TEXT NOT NULL REFERENCES stations(station),
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    void INTEGER NOT NULL DEFAULT 0,  -- superseded by a newer token, or the station was revoked
    claim TEXT,                       -- the claim's id: its login is protocol.enrol_login(county, claim)
    confirmed_at REAL,                -- the station was seen online under its own login
    login_gone INTEGER NOT NULL DEFAULT 0,  -- the claim's login was deleted from the broker
    used_by TEXT                      -- the public key of the station that used it
);
"""


class RegistryError(RuntimeError):
    pass


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """Why a token is (not) good, as the registrar reports it."""

    station: str | None
    code: str  # "ok", "token-unknown", "token-void", "token-used", "token-expired"
    claim: str | None = None


class Registry:
    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise RegistryError(f"{self.path}: no registry here; create one with `yimen registrar init`")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        # Used from the registrar's worker thread and, for status updates, from paho's.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(tokens)")}
        if "used_by" not in columns:  # a registry made before enrolment could be retried
            self._db.execute("ALTER TABLE tokens ADD COLUMN used_by TEXT")

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One transaction at a time on this connection; IMMEDIATE so that a `yimen registrar`
        command in another process waits (busy_timeout) instead of failing half-way."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ----- settings -----------------------------------------------------------------------------

    def set_settings(self, values: dict[str, Any]) -> None:
        with self._tx():
            self._db.executemany(
                "INSERT OR REPLACE INTO settings VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
            )

    def settings(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM settings").fetchall()
        if not rows:
            raise RegistryError(f"{self.path}: registry has no settings; run `yimen registrar init`")
        return {k: json.loads(v) for k, v in rows}

    # ----- stations and tokens ------------------------------------------------------------------

    def station(self, station: str) -> dict[str, Any] | None:
        with self._lock:
            cur = self._db.execute("SELECT * FROM stations WHERE station = ?", (station,))
            row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row, strict=True)) if row else None

    def stations(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT * FROM stations ORDER BY station")
            rows = cur.fetchall()
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def add_token(self, station: str, name: str, token: str, expires_at: float, claim: str) -> None:
        """A new claim for `station`; any earlier unused claim for it stops working."""
        now = time.time()
        with self._tx():
            self._db.execute(
                "INSERT INTO stations (station, name, state) VALUES (?, ?, 'pending') ON CONFLICT(station) "
                "DO UPDATE SET name = CASE WHEN excluded.name = '' THEN name ELSE excluded.name END",
                (station, name),
            )
            self._db.execute("UPDATE tokens SET void = 1 WHERE station = ? AND used_at IS NULL", (station,))
            self._db.execute(
                "INSERT INTO tokens (hash, station, issued_at, expires_at, claim) VALUES (?, ?, ?, ?, ?)",
                (token_hash(token), station, now, expires_at, claim),
            )

    def claim(self, token: str, now: float, public_key: str) -> Claim:
        """Consume a token if it is good; otherwise say why not. At most one station key ever gets
        "ok" for a token, but that key gets it again until the station is heard from with the
        login it was given (`confirmed`): a station whose power went between the county's answer
        and its own write asks again with the same key and claim, and is not stranded. Only the
        holder of that key can open the answer."""
        digest = token_hash(token)
        with self._tx():
            won = self._db.execute(
                "UPDATE tokens SET used_at = ?, used_by = ? "
                "WHERE hash = ? AND used_at IS NULL AND void = 0 AND expires_at > ?",
                (now, public_key, digest, now),
            ).rowcount
            row = self._db.execute(
                "SELECT station, used_at, void, claim, used_by, confirmed_at FROM tokens WHERE hash = ?", (digest,)
            )
            found = row.fetchone()
        if found is None:
            return Claim(None, "token-unknown")
        station, used_at, void, claim, used_by, confirmed_at = found
        if won:
            return Claim(station, "ok", claim)
        if void:
            return Claim(station, "token-void", claim)
        if used_at is not None and used_by == public_key and confirmed_at is None:
            return Claim(station, "ok", claim)
        return Claim(station, "token-used" if used_at is not None else "token-expired", claim)

    def unclaim(self, token: str) -> None:
        """Give a token back: the enrolment it was claimed for failed on the county's side."""
        with self._tx():
            self._db.execute("UPDATE tokens SET used_at = NULL, used_by = NULL WHERE hash = ?", (token_hash(token),))

    def enrolled(self, station: str, username: str, serial: str, public_key: str, inventory: dict[str, Any]) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE stations SET state = 'enrolled', username = ?, serial = ?, public_key = ?, inventory = ?, "
                "enrolled_at = ?, revoked_at = NULL WHERE station = ?",
                (username, serial, public_key, json.dumps(inventory, ensure_ascii=False), time.time(), station),
            )

    def revoked(self, station: str) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE stations SET state = 'revoked', revoked_at = ? WHERE station = ?", (time.time(), station)
            )
            self._db.execute("UPDATE tokens SET void = 1 WHERE station = ? AND used_at IS NULL", (station,))

    def confirm(self, station: str) -> int:
        """The station is online under its own login: its used claims' logins may go."""
        with self._tx():
            return self._db.execute(
                "UPDATE tokens SET confirmed_at = ? WHERE station = ? AND used_at IS NOT NULL AND confirmed_at IS NULL",
                (time.time(), station),
            ).rowcount

    def stale_logins(self, now: float) -> list[str]:
        """Claims whose login is still on the broker but must not be: expired, void, or used and
        confirmed (until then a station may ask again with the same claim)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT claim FROM tokens WHERE claim IS NOT NULL AND login_gone = 0 "
                "AND (void = 1 OR expires_at <= ? OR confirmed_at IS NOT NULL) ORDER BY issued_at",
                (now,),
            ).fetchall()
        return [claim for (claim,) in rows]

    def login_gone(self, claim: str) -> None:
        with self._tx():
            self._db.execute("UPDATE tokens SET login_gone = 1 WHERE claim = ?", (claim,))

    def record_status(self, station: str, status: dict[str, Any]) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE stations SET last_status = ?, last_status_at = ? WHERE station = ?",
                (json.dumps(status, ensure_ascii=False), time.time(), station),
            )
