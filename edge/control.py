"""`yimen hall ...` talks to the running gateway through a Unix socket in the storage directory.

Why a socket rather than a command file: the person at the terminal gets the answer at once
(the ticket called, or why the station refused), with no polling and no reply file to clean up;
access is the socket file's mode (0660: the gateway's user and group, e.g. an installer in the
`yimen` group), as for any local daemon; and a gateway that is not running is an immediate
"connection refused", not a file that is never read.

One request per connection: a JSON object `{"command": name, "args": {...}}`, at most
MAX_REQUEST_BYTES, then EOF (the client shuts down its writing side), all within READ_S of
connecting (one thread serves the socket: a stuck client must not hold it). The answer is the MQTT
reply payload (`mqtt.commands.response`). Each request is checked against the command's schema
with the very code the MQTT downlink uses. One named thread serves connections one at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from mqtt.commands import MAX_REQUEST_BYTES, Command, CommandError, parse_request, response

log = logging.getLogger("yimen.control")

NAME = "control.sock"
TIMEOUT_S = 30.0  # the client's wait for the answer (a command may wait for the printer)
READ_S = 5.0  # a request must come whole within this of connecting, or the client is dropped


class ControlSocket:
    def __init__(self, path: Path, commands: list[Command]) -> None:
        self.path = path
        self._commands = {c.name: c for c in commands}
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="yimen-control", daemon=True)
        self.handled = 0
        self.refused = 0

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a gateway that died: nobody listens on it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)  # created 0660, never briefly wider
        try:
            sock.bind(str(self.path))
        except OSError as exc:  # e.g. a storage path longer than a socket's 107 bytes
            sock.close()
            log.error("control socket %s: %s; `yimen hall` will not reach this gateway", self.path, exc)
            return
        finally:
            os.umask(old)
        sock.listen(4)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(TIMEOUT_S + 1)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    raw = _read(conn, time.monotonic() + READ_S)
                    conn.settimeout(TIMEOUT_S)
                    conn.sendall(self.answer(raw))
                except OSError as exc:
                    log.warning("control socket: a client went away: %s", exc)

    def answer(self, raw: bytes) -> bytes:
        """The reply to one request's bytes; never raises."""
        try:
            if len(raw) > MAX_REQUEST_BYTES:
                raise CommandError("too-large", f"request is over {MAX_REQUEST_BYTES} bytes")
            try:
                doc = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CommandError("bad-request", f"not UTF-8 JSON: {exc}") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("command"), str):
                raise CommandError("bad-request", 'give {"command": name, "args": {...}}')
            name = doc["command"]
            args = parse_request(self._commands.get(name), name, json.dumps(doc.get("args", {})).encode())
            result = self._commands[name].handler(args)
        except CommandError as exc:
            self.refused += 1
            log.info("control socket: refused: %s (%s)", exc.message, exc.code)
            return response(error=exc)
        except Exception as exc:
            self.refused += 1
            log.exception("control socket: command failed")
            return response(error=CommandError("failed", f"{type(exc).__name__}: {exc}"))
        self.handled += 1
        return response(result)


def _read(conn: socket.socket, deadline: float) -> bytes:
    """Up to one byte over the limit (so that a larger request is refused, not cut short), by
    `deadline` (time.monotonic) or TimeoutError."""
    data = b""
    while len(data) <= MAX_REQUEST_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no whole request within {READ_S:.0f} s")
        conn.settimeout(remaining)
        part = conn.recv(65536)
        if not part:
            break
        data += part
    return data


def request(path: Path, command: str, args: dict[str, Any]) -> dict[str, Any]:
    """Send one request to the gateway's control socket; its reply as a dict. Raises OSError
    (e.g. ConnectionRefusedError, FileNotFoundError) when no gateway listens there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.connect(str(path))
        sock.sendall(json.dumps({"command": command, "args": args}, ensure_ascii=False).encode())
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while part := sock.recv(65536):
            data += part
    return json.loads(data)
