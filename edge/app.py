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

from edge import __version__, retention, systemd
from edge.clock import ClockSource
from edge.config import Config, config_commands
from edge.health import Health
from edge.outbox import Outbox
from edge.periodic import Periodic
from mqtt.downlink import Downlink
from mqtt.uplink import Uplink

log = logging.getLogger("yimen.app")


class Part(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = ClockSource(config.clock)
        self.outbox = Outbox(
            config.storage.outbox_path,
            config.station.id,
            clock=self.clock,
            max_bytes=config.storage.max_bytes,
        )
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
            from edge.media import MediaStore
            from peripherals.camera import make_camera

            media = MediaStore(config.storage.path, self.outbox.append)
            self.parts += [make_camera(cam, media) for cam in config.cameras]
        if config.simulate is not None:
            from peripherals.simulator.sim import SimulatedStation

            self.parts.append(SimulatedStation(config.simulate, self.outbox.append))
        interval = systemd.watchdog_interval()
        if interval is not None:
            # Last to start, first to stop: it vouches for the parts started before it.
            checks = [("outbox commit thread", self.outbox.committing), ("uplink thread", self.uplink.alive)]
            self.parts.append(systemd.Watchdog(interval, checks, self.outbox.responsive))

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
    systemd.notify(f"READY=1\nSTATUS=running: station {config.station.id}")
    try:
        stop.wait()
    finally:
        log.info("stopping")
        systemd.notify("STOPPING=1")
        gateway.stop()
    return 0
