"""The calling screen: a page for a screen in the hall, served by the Pi itself.

`[screen]` in the station's config switches it on. The page shows the numbers being called and
their windows, how many wait in each category coloured by its time-limit light, each window's
ticket and light, and the station's name. It needs nothing beyond the Pi: no county link, no
internet, no fonts from elsewhere (the installer puts a CJK font on the machine that runs the
browser). Calls are spoken on the Pi by the announcer (`[announce] voice`, espeak-ng in Mandarin).

Served by the standard library's ThreadingHTTPServer (no Starlette on a station): `/` the page,
`/state` the current view as JSON, `/events` a Server-Sent Events stream that sends the view
each time the station's owner thread changes it (a call reaches the screen within a tick), and
a comment every few seconds to keep the connection awake and notice a screen that has gone. At
most MAX_CONNECTIONS connections and MAX_STREAMS streams at once, a client idle for IDLE_S is
dropped, a request's line and headers must come whole within HEAD_S and MAX_HEAD bytes (else 431,
or the connection closed); everything else is a 404, every method but GET and HEAD a 405.

It listens on the Pi alone (127.0.0.1) unless `bind` says otherwise: a screen on another machine
needs `bind` set to the address the hall's network reaches (or "0.0.0.0"). What it serves is only
what the screen shows (no clerk ids, no day's totals): anyone on that network may read it.

```toml
[screen]
port = 8090            # http://<the Pi>:8090/ on the hall screen's browser
bind = "192.168.1.20"  # the Pi's address on the hall's network; default "127.0.0.1" (kiosk on the Pi's HDMI)
```
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from edge.configfile import Section

log = logging.getLogger("yimen.screen")

MAX_STREAMS = 16  # screens in a hall: a handful; beyond this a stream is refused (503)
MAX_CONNECTIONS = 32  # connections served at once (one thread each); more are closed unanswered
IDLE_S = 10.0  # a client that sends nothing (or takes nothing) this long is dropped
RETRY_S = 10.0  # a port that was taken is tried again this often
KEEPALIVE_S = 5.0  # a stream sends at least this often: a dead screen is noticed within IDLE_S after
MAX_HEAD = 8 * 1024  # a request's line and headers (a browser's are under 2 KiB)
HEAD_S = 10.0  # ... all within this: a byte every IDLE_S does not keep a slot


@dataclass(frozen=True)
class ScreenConfig:
    port: int = 8090
    bind: str = "127.0.0.1"


def parse_screen(section: Section) -> ScreenConfig:
    cfg = ScreenConfig(
        port=section.get_int("port", ScreenConfig.port, minval=0, maxval=65535),
        bind=section.get_str("bind", ScreenConfig.bind),
    )
    section.done()
    return cfg


class Screen:
    """The HTTP server; `changed()` (from the station's owner thread) only wakes the streams."""

    def __init__(self, cfg: ScreenConfig, station_name: str, view: Callable[[], dict[str, Any]]) -> None:
        self._cfg = cfg
        self._name = station_name
        self._view = view
        self._version = 0
        self._changed = threading.Condition()
        self._streams = threading.BoundedSemaphore(MAX_STREAMS)
        self._stopping = threading.Event()
        self._page = resources.files("edge").joinpath("static/screen.html").read_bytes()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def start(self) -> None:
        """Listen, or, if the port cannot be had (another program on it), say so and keep trying
        on the server's thread: the hall screen fails alone, the station runs on."""
        if not self._listen(first=True):
            self._thread = threading.Thread(target=self._retry, name="yimen-screen", daemon=True)
            self._thread.start()

    def _listen(self, first: bool = False) -> bool:
        screen = self

        class Handler(_Handler):
            owner = screen

        try:
            server = _BoundedServer((self._cfg.bind, self._cfg.port), Handler)
        except OSError as exc:
            if first:
                log.error(
                    "calling screen: cannot listen on %s:%d (%s): free the port or set [screen] port; "
                    "trying again every %.0f s",
                    self._cfg.bind,
                    self._cfg.port,
                    exc,
                    RETRY_S,
                )
            return False
        server.daemon_threads = True
        self._server = server
        log.info("calling screen on http://%s:%d/", self._cfg.bind, self.port)
        if first:
            self._thread = threading.Thread(target=server.serve_forever, name="yimen-screen", daemon=True)
            self._thread.start()
        return True

    def _retry(self) -> None:
        while not self._stopping.wait(RETRY_S):
            if self._listen():
                assert self._server is not None
                self._server.serve_forever()
                return

    def stop(self) -> None:
        self._stopping.set()
        self.changed()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def changed(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def state(self) -> bytes:
        return json.dumps(_shown(self._name, self._view()), ensure_ascii=False).encode()

    def wait(self, seen: int, timeout: float) -> int:
        """The version after `seen`, or `seen` again after `timeout` or when stopping."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != seen or self._stopping.is_set(), timeout)
            return self._version


def _shown(station: str, view: dict[str, Any]) -> dict[str, Any]:
    """Of the station's hall view, what the page shows (static/screen.html): the screen is on
    the hall's network, so who is signed in at a window and the day's totals stay off it."""
    queue = view.get("queue", {})
    limits = queue.get("limits", {})
    return {
        "station": station,
        "calls": view.get("calls", []),
        "categories": view.get("categories", {}),
        "queue": {
            "waiting": queue.get("waiting", {}),
            "windows": {
                n: {"state": w.get("state"), "ticket": w.get("ticket")} for n, w in queue.get("windows", {}).items()
            },
            "limits": {
                "categories": {c: {"light": v.get("light")} for c, v in limits.get("categories", {}).items()},
                "windows": limits.get("windows", {}),
            },
        },
    }


class _Head(io.RawIOBase):
    """The connection's reading side as http.server reads it (one request per connection, GET
    only, so every byte read is the request's head): at most MAX_HEAD bytes, all within HEAD_S of
    the connection's start. Past MAX_HEAD it reads as closed and `cut` is set; past HEAD_S it
    raises TimeoutError, which http.server answers by closing the connection."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._deadline = time.monotonic() + HEAD_S
        self._left = MAX_HEAD
        self.cut = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            self.cut = True
            return 0
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"request head not whole within {HEAD_S:.0f} s")
        self._sock.settimeout(min(IDLE_S, remaining))
        try:
            n = self._sock.recv_into(memoryview(buffer)[: self._left])
        finally:
            self._sock.settimeout(IDLE_S)  # the stream's writes keep the idle limit
        self._left -= n
        return n


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS of them: anyone on the hall's network can
    connect, and an unbounded server would let one of them pile up threads."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.turned_away = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.turned_away += 1
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Handler(BaseHTTPRequestHandler):
    owner: Screen
    server_version = "yimen-screen"
    timeout = IDLE_S  # http.server sets it on the socket: reads and writes

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # http.server's own reader, replaced by the bounded one
        self._head = _Head(self.connection)
        self.rfile = io.BufferedReader(self._head)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self._head.cut:
            self.send_error(431, f"request line and headers over {MAX_HEAD} bytes")
            return False
        return True

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, "text/html; charset=utf-8", self.owner._page)
        elif path == "/state":
            self._send(200, "application/json", self.owner.state())
        elif path == "/events":
            self._stream()
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: the screen is at /\n")

    def _refuse(self) -> None:
        self._send(405, "text/plain; charset=utf-8", b"only GET\n")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _send(self, code: int, kind: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stream(self) -> None:
        owner = self.owner
        if not owner._streams.acquire(blocking=False):
            self._send(503, "text/plain; charset=utf-8", b"too many screens\n")
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seen = -1
            last = b""
            while not owner._stopping.is_set():
                state = owner.state()
                if state != last:
                    self.wfile.write(b"data: " + state + b"\n\n")
                    last = state
                else:
                    self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
                seen = owner.wait(seen, KEEPALIVE_S)
        except OSError:
            pass  # the screen went away (closed tab, network): nothing to clean up but the slot
        finally:
            owner._streams.release()
