"""Calls announced: spoken through the Pi's audio (espeak-ng, Mandarin) and published as a `call`
event for station displays. Both off by default.

Neither may hold up the queue: the owner thread only offers a call to a bounded queue; each
output has its own named thread, and a call offered while its queue is full is dropped and
counted (a call announced late is worse than one not announced: the citizen has the ticket,
the window unit and the display).
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

from edge.events import Emit, NewEvent, Priority
from edge.station.config import AnnounceConfig
from edge.station.state import iso

log = logging.getLogger("yimen.station.announce")

KIND = "call"
T = TypeVar("T")
_DIGITS = "零一二三四五六七八九"
STOP_S = 1.0  # how long stopping waits for a call being spoken or shown


def spoken(number: str) -> str:
    """ "A012" -> "A零一二": ticket digits are read one by one, as halls call them; espeak-ng's
    Mandarin voice would read "012" as a quantity."""
    return "".join(_DIGITS[int(ch)] if ch.isdigit() else ch for ch in number)


class Worker(Generic[T]):
    """A named thread with a bounded queue; `offer` never blocks, and drops and counts when full."""

    def __init__(self, name: str, handle: Callable[[T], object], max_pending: int) -> None:
        self.name = name
        self._handle = handle
        self._items: queue.Queue[T | None] = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.done = 0
        self.dropped = 0
        self.failed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop after the item in hand; wait at most `timeout_s` for it (a stuck printer or
        speech engine must not hold up a shutdown: the thread is a daemon)."""
        if not self._thread.is_alive():
            return
        while True:
            # Make room for the stop marker: what is still queued would be announced too late.
            try:
                self._items.put_nowait(None)
                break
            except queue.Full:
                self._drain_one()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("%s did not finish within %.1f s; left behind", self.name, timeout_s)

    def _drain_one(self) -> None:
        try:
            self._items.get_nowait()
            self.dropped += 1
        except queue.Empty:
            pass

    def offer(self, item: T) -> bool:
        try:
            self._items.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            log.warning("%s is behind: dropped a call (%d dropped so far)", self.name, self.dropped)
            return False
        return True

    def _run(self) -> None:
        while (item := self._items.get()) is not None:
            try:
                self._handle(item)
                self.done += 1
            except Exception:
                self.failed += 1
                log.exception("%s failed", self.name)

    def status(self) -> dict[str, int]:
        return {"done": self.done, "dropped": self.dropped, "failed": self.failed, "pending": self._items.qsize()}


def speaker(cfg: AnnounceConfig) -> Callable[[str], None]:
    """Speak one text with the configured command (espeak-ng plays to the default audio output)."""

    def speak(text: str) -> None:
        try:
            subprocess.run([*cfg.command, text], check=True, capture_output=True, timeout=cfg.timeout_s)
        except FileNotFoundError:
            raise RuntimeError(f"{cfg.command[0]} is not installed (apt install espeak-ng)") from None
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"{cfg.command[0]} failed: {exc.stderr.decode(errors='replace').strip()}") from None

    return speak


class Announcer:
    def __init__(self, cfg: AnnounceConfig, emit: Emit, speak: Callable[[str], None] | None = None) -> None:
        self._cfg = cfg
        self.voice = Worker("yimen-announce-voice", speak or speaker(cfg), cfg.max_pending) if cfg.voice else None
        self.display = Worker("yimen-announce-display", emit, cfg.max_pending) if cfg.display else None

    def start(self) -> None:
        for worker in (self.voice, self.display):
            if worker is not None:
                worker.start()

    def stop(self) -> None:
        for worker in (self.voice, self.display):
            if worker is not None:
                worker.stop(STOP_S)

    def call(self, number: str, window: int, category: str, now: datetime) -> None:
        """Announce one call (or recall); returns at once."""
        text = self._cfg.template.format(number=number, window=window, category=category)
        if self.voice is not None:
            self.voice.offer(self._cfg.template.format(number=spoken(number), window=window, category=category))
        if self.display is not None:
            data = {"ticket": number, "window": window, "category": category, "text": text, "at": iso(now)}
            self.display.offer(NewEvent(KIND, Priority.NORMAL, data))

    def status(self) -> dict[str, Any]:
        return {name: w.status() if w else None for name, w in (("voice", self.voice), ("display", self.display))}
