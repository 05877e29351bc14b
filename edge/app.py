"""The composition root: the only module that knows every part of the gateway.

Build (config, outbox) with no network; connect (uplink, producers); run until SIGTERM or
SIGINT; stop in reverse order, so that producers stop before the outbox closes and the
uplink says offline before it disconnects.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any, Protocol

from edge import __version__, retention
from edge.clock import ClockSource
from edge.config import Config, config_commands
from edge.health import Health
from edge.media import MediaStore
from edge.outbox import Outbox
from edge.periodic import Periodic
from mqtt.downlink import Downlink
from mqtt.media_upload import MediaUploader
from mqtt.uplink import Uplink

log = logging.getLogger("yimen.app")


class Part(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = ClockSource(config.clock)
        self.media: MediaStore | None = None  # made once the outbox has vetted the storage path
        self.outbox = Outbox(
            config.storage.outbox_path,
            config.station.id,
            clock=self.clock,
            max_bytes=config.storage.max_bytes,
            extra_usage=self._media_bytes,
            reclaim=self._reclaim_media,
        )
        self.uploader = MediaUploader(
            config.media, config.storage.path, config.station.county, config.station.id,
            v5=config.broker.protocol == "5",
        )  # fmt: skip
        self.media = MediaStore(config.storage.path, self.outbox.append)
        self.health = Health(self.outbox, config.storage.path, config.storage.max_bytes, self.clock.synced)
        self.downlink = Downlink(config.station.county, config.station.id)
        self.uplink = Uplink(
            config.broker,
            config.station.county,
            config.station.id,
            self.outbox,
            status_fields=self.health.status_fields,
            subscriptions=self.downlink.subscriptions(),
            on_message=self.downlink.on_message,
            media=self.uploader,
        )
        self.downlink.bind(self.uplink.publish_control)
        for command in [*self.uplink.commands(), config_commands(config)]:
            self.downlink.register(command)
        self._was_synced = self.clock.synced()
        self.parts: list[Part] = [
            self.downlink,
            self.uplink,
            Periodic("yimen-telemetry", config.telemetry.interval_s, self.health.report),
            Periodic("yimen-retention", 3600.0, self._expire, run_first=True),
            Periodic("yimen-clock", config.clock.poll_s, self._watch_clock),
        ]
        if config.cameras:
            from edge.cameras import Cameras
            from mqtt.live import LiveView
            from peripherals.camera import make_camera

            cameras = Cameras(make_camera(cam, self.media) for cam in config.cameras)
            live = LiveView(
                cameras.by_window, self.uplink.publish_live, config.station.county, config.station.id, config.media
            )
            self.outbox.subscribe_events(cameras.on_events)  # a bad rating's clip, until the station logic asks
            for command in [*cameras.commands(), *live.commands()]:
                self.downlink.register(command)
            self.parts += [*cameras.by_window.values(), live]
        if config.simulate is not None:
            from peripherals.simulator.sim import SimulatedStation

            self.parts.append(SimulatedStation(config.simulate, self.outbox.append))

    def _media_bytes(self) -> int:
        return 0 if self.media is None else self.media.used_bytes()

    def _reclaim_media(self, nbytes: int) -> list[str]:
        return [] if self.media is None else self.media.reclaim(nbytes, self.uploader.uploaded)

    def _expire(self) -> None:
        retention.expire(self.outbox, self.config.storage.retention_days)

    def _watch_clock(self) -> None:
        synced = self.clock.synced()
        if synced and not self._was_synced:
            fixed = self.outbox.correct_unsynced(time.time(), time.monotonic_ns())
            log.info("clock synchronised; corrected the timestamps of %d undelivered events", fixed)
        self._was_synced = synced

    def start(self) -> None:
        self.outbox.set_meta("pid", str(os.getpid()))
        self._watch_clock()
        for part in self.parts:
            part.start()

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()
        self.outbox.set_meta("pid", "")
        self.outbox.close()
        self.uploader.close()

    def status(self) -> dict[str, Any]:
        return {"uplink": self.uplink.status(), "outbox": self.outbox.stats()}


def run(config: Config) -> int:
    """`yimen run`: the gateway in the foreground until SIGTERM/SIGINT."""
    log.info(
        "yimen %s starting: station %s (county %s), broker %s:%d, storage %s",
        __version__,
        config.station.id,
        config.station.county,
        config.broker.host,
        config.broker.port,
        config.storage.path,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    gateway = Gateway(config)
    gateway.start()
    try:
        stop.wait()
    finally:
        log.info("stopping")
        gateway.stop()
    return 0
