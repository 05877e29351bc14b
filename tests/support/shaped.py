"""A shaped TCP relay for the benchmarks and tests: a village line between station and broker.

Each direction is a line of `kbps` kilobits a second with `delay_s` one-way delay: a chunk read
from one side leaves the line's far end once the line has serialised every byte before it and
it (len x 8 / rate), plus the delay. What the relay has read but not yet delivered waits in its
queue, as in a modem's buffer. Counted per direction: bytes, and when each chunk occupied the
line (for how busy it was over an interval). TCP/IP headers are not counted: bytes are MQTT's.
"""

from __future__ import annotations

import bisect
import contextlib
import queue
import socket
import threading
import time


class Line:
    """One direction: reads `src`, delivers to `dst` when the line would have."""

    def __init__(self, src: socket.socket, dst: socket.socket, kbps: float, delay_s: float) -> None:
        self.src, self.dst = src, dst
        self.byte_s = 8 / (kbps * 1000)
        self.delay_s = delay_s
        self.free_at = 0.0
        self.bytes = 0
        self.busy: list[tuple[float, float]] = []  # (start, end) on the line, perf_counter seconds
        self._out: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, name="shaped-read", daemon=True).start()
        threading.Thread(target=self._write, name="shaped-write", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.src.recv(1448)  # about one TCP segment
            except OSError:
                data = b""
            if not data:
                self._out.put(None)
                return
            start = max(time.perf_counter(), self.free_at)
            self.free_at = start + len(data) * self.byte_s
            self.busy.append((start, self.free_at))
            self.bytes += len(data)
            self._out.put((self.free_at + self.delay_s, data))

    def _write(self) -> None:
        while (item := self._out.get()) is not None:
            due, data = item
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            try:
                self.dst.sendall(data)
            except OSError:
                break
        for sock in (self.dst, self.src):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def busy_fraction(self, t0: float, t1: float) -> float:
        """How much of [t0, t1] the line spent carrying bytes."""
        starts = [b[0] for b in self.busy]
        total = 0.0
        for start, end in self.busy[max(0, bisect.bisect_left(starts, t0) - 1) :]:
            if start >= t1:
                break
            total += max(0.0, min(end, t1) - max(start, t0))
        return total / (t1 - t0)


class ShapedRelay:
    """Listens on a free loopback port; each connection is relayed to `target_port` through two Lines."""

    def __init__(self, target_port: int, kbps: float = 256.0, delay_s: float = 0.060) -> None:
        self.target_port = target_port
        self.kbps, self.delay_s = kbps, delay_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.lines: list[tuple[Line, Line]] = []  # (up, down) per connection
        threading.Thread(target=self._accept, name="shaped-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                station, _ = self._listener.accept()
            except OSError:
                return
            broker = socket.create_connection(("127.0.0.1", self.target_port))
            for sock in (station, broker):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up = Line(station, broker, self.kbps, self.delay_s)
            down = Line(broker, station, self.kbps, self.delay_s)
            self.lines.append((up, down))

    def totals(self) -> dict[str, int]:
        return {"up": sum(u.bytes for u, _ in self.lines), "down": sum(d.bytes for _, d in self.lines)}

    def close(self) -> None:
        self._listener.close()
