"""`yimen status`: the station's state read from its files, never from the running process.

It opens the outbox read-only (WAL lets it read beside a running gateway without blocking
it) and works just as well while the gateway is stopped.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from edge import configlayers
from edge.config import Config
from edge.outbox import read_stats


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_outbox(path: Path | None) -> tuple[dict[str, Any], dict[str, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True) if path and path.exists() else None
    try:
        if conn is None or not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone():
            # A new station (or one starting this instant): same shape as a real answer, all zero.
            if conn is not None:
                conn.close()
            conn = sqlite3.connect(":memory:")
            conn.execute("CREATE TABLE events (seq, kind, priority, created, delivered, parked)")
            conn.execute("CREATE TABLE meta (key, value)")
            conn.execute("INSERT INTO meta VALUES ('connection', 'never run||the gateway has not run here yet')")
        return read_stats(conn, time.time()), dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        if conn is not None:
            conn.close()


def read(config: Config) -> dict[str, Any]:
    path = config.storage.outbox_path
    problem = None
    try:
        stats, meta = _read_outbox(path)
    except sqlite3.DatabaseError as exc:
        # SD cards corrupt; the gateway renames such a file aside at its next start.
        problem = f"outbox {path} is unreadable ({exc}); the gateway moves it aside and starts anew when it starts"
        stats, meta = _read_outbox(None)
    pid = int(meta.get("pid") or 0)
    running = pid > 0 and _alive(pid)
    state, since, cause = (meta.get("connection") or "unknown|0|").split("|", 2)
    return {
        "station": config.station.id,
        "county": config.station.county,
        "gateway": f"running (pid {pid})" if running else "stopped",
        "outbox": str(path),
        "outbox_problem": problem,
        # Which file set which value: the installer's, or the station's own laid over it.
        "config_files": configlayers.describe(config.layers) if config.layers is not None else [],
        **stats,
        "broker": {
            "address": f"{config.broker.host}:{config.broker.port}",
            "connection": state if running else f"{state} (as last recorded; the gateway is stopped)",
            "since": float(since or 0) or None,
            "cause": cause,
        },
        # The month's bytes on the line, as the gateway last saved them (each minute; edge/budget.py).
        "link": json.loads(meta["link_month"]) if meta.get("link_month") else None,
    }


def _when(ts: float | None) -> str:
    return "never" if not ts else datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def render(status: dict[str, Any]) -> str:
    backlog = ", ".join(f"{k} {v}" for k, v in status["backlog"].items())
    oldest = status["oldest_undelivered"]
    lines = [
        f"station {status['station']} (county {status['county']}): gateway {status['gateway']}",
        f"broker {status['broker']['address']}: {status['broker']['connection']} since "
        f"{_when(status['broker']['since'])} ({status['broker']['cause']})",
        f"last seq {status['last_seq']}; undelivered {status['undelivered']} ({backlog}; parked "
        f"{status['parked']['count']})",
        "oldest undelivered: " + ("none" if oldest is None else f"seq {oldest['seq']}, {oldest['age_s']:.0f} s old"),
        f"last delivery: {_when(status['last_delivery'])}",
    ]
    if status["outbox_problem"]:
        lines.insert(1, "PROBLEM: " + status["outbox_problem"])
    lines += [f"config {line}" for line in status.get("config_files", [])]
    lines += [f"  parked seq {p['seq']} ({p['kind']}): {p['reason']}" for p in status["parked"]["events"]]
    return "\n".join(lines)
