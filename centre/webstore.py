"""The web side's own connection to the store, for accounts, the audit trail, reports and alerts.

Ingest owns its connection and its transactions; requests run on Starlette's thread pool, so
they get a second connection, used by one request at a time (the lock), each call committed at
once so that no request leaves a transaction open under ingest's feet. Tables that belong to a
module (accounts, audit) are made by that module through `ensure`, on either engine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from centre.config import StoreConfig
from centre.store import Store, open_store


class WebStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        self._lock = threading.Lock()

    @classmethod
    def open(cls, config: StoreConfig) -> WebStore:
        return cls(open_store(config))

    def ensure(self, statements: Iterable[str]) -> None:
        """Make a module's tables (statements must be idempotent: IF NOT EXISTS, OR REPLACE)."""
        with self._lock:
            for statement in statements:
                self.store.conn.execute(statement)
            self.store.commit()

    def execute(self, sql: str, params: tuple = ()) -> int:
        """One write, committed; returns the rows it touched."""
        with self._lock:
            try:
                cur = self.store._exec(sql, params)
                self.store.commit()
            except Exception:
                self.store.conn.rollback()
                raise
            return cur.rowcount

    def rows(self, sql: str, params: tuple = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                out = list(self.store._exec(sql, params))
            except Exception:
                self.store.conn.rollback()
                raise
            self.store.commit()  # PostgreSQL: end the read's transaction; see the docstring
            return out

    def one(self, sql: str, params: tuple = ()) -> tuple[Any, ...] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def close(self) -> None:
        with self._lock:
            self.store.close()
