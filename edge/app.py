"""The composition root: the only module that knows every part of the gateway.

Build (config, outbox, printer, station) with no network; connect (uplink, producers); run
until SIGTERM or SIGINT; stop in reverse order, so that producers stop before the outbox closes
and the uplink says offline before it disconnects. The station starts after the printer it
prints on and stops before it; the drivers that press its keys start after it and stop before it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from edge import __version__, retention, systemd
from edge.budget import DataBudget
from edge.clock import SAVED_NAME, ClockSource
from edge.config import Config, config_commands
from edge.configset import ConfigChanges
from edge.events import NewEvent, Priority
from edge.health import Health
from edge.media import MediaStore
from edge.outbox import Outbox
from edge.periodic import Periodic
from edge.station.announce import Announcer
from edge.station.service import Station
from mqtt.downlink import Downlink
from mqtt.media_upload import MediaUploader
from mqtt.uplink import Uplink
from peripherals import printer
from peripherals.keyevents import KeyPress
from peripherals.window_unit import WindowUnitDriver, window_units
from provisioning import inventory

log = logging.getLogger("yimen.app")

# What `yimen run` does next, after the gateway stopped on its own: start again (a config
# change, the `restart` command), or enrol first (the broker refused our login and a new claim
# is at hand). The CLI re-executes itself; if it cannot, it exits with this code for systemd.
EXIT_RESTART = 75
EXIT_ENROL = 76
# How often the last known time is saved for the next boot (edge/clock.py): fake-hwclock saves
# hourly; a power cut loses at most this much of it, and the SD card sees 144 small writes a day.
CLOCK_SAVE_S = 600.0


class Part(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class Gateway:
    def __init__(self, config: Config, stopping: threading.Event | None = None) -> None:
        self.config = config
        self.clock = ClockSource(config.clock, saved=config.storage.path / SAVED_NAME)
        self.media: MediaStore | None = None  # made once the outbox has vetted the storage path
        self.outbox = Outbox(
            config.storage.outbox_path,
            config.station.id,
            clock=self.clock,
            max_bytes=config.storage.max_bytes,
            extra_usage=self._media_bytes,
            reclaim=self._reclaim_media,
        )
        self.budget = DataBudget(config.link, self.outbox)
        self.uploader = MediaUploader(
            config.media, config.storage.path, config.station.county, config.station.id,
            v5=config.broker.protocol == "5", may_upload=self.budget.may_upload,
        )  # fmt: skip
        self.media = MediaStore(config.storage.path, self.outbox.append)
        self.downlink = Downlink(
            config.station.county,
            config.station.id,
            load=lambda: self.outbox.get_meta("commands-run"),
            save=partial(self.outbox.set_meta, "commands-run"),
        )
        self.fetcher = self._fetcher() if config.update.enabled else None
        self.printer = printer.build(
            config.printer,
            station_name=config.station.name or config.station.id,
            emit=self.outbox.append,
            simulate=config.simulate is not None and config.simulate.printer,
        )
        self.station = (
            Station(
                config.service,
                config.station.id,
                self.outbox,
                printer=self.printer,
                announcer=Announcer(config.service.announce, self.outbox.append),
                now=lambda: datetime.fromtimestamp(self.clock.now()).astimezone(),
                day_known=self.clock.synced,
            )
            if config.service is not None
            else None
        )
        self.health = Health(
            self.outbox,
            config.storage.path,
            config.storage.max_bytes,
            self.clock.synced,
            queue_snapshot=self.station.snapshot if self.station is not None else None,
            link=self.budget.status,
        )
        self.uplink = Uplink(
            config.broker,
            config.station.county,
            config.station.id,
            self.outbox,
            status_fields=self.health.status_fields,
            subscriptions=self.downlink.subscriptions() + (self.fetcher.subscriptions() if self.fetcher else []),
            on_message=self._on_message,
            media=self.uploader,
            link=config.link,
            meter=self.budget.count,
        )
        self.downlink.bind(self.uplink.publish_control)
        self.stopping = stopping or threading.Event()  # set: `run` stops the gateway
        self.exit_code = 0
        self.changes = ConfigChanges(config, self.outbox.append, lambda: self.request_exit(EXIT_RESTART))
        ota_commands = self.fetcher.commands() if self.fetcher else []
        for command in [*self.uplink.commands(), config_commands(config), *self.changes.commands(), *ota_commands]:
            self.downlink.register(command)
        self._was_synced = self.clock.synced()
        self._clock_saved = -CLOCK_SAVE_S  # saved at start, then every CLOCK_SAVE_S and at stop
        self._inventory: str | None = None  # the inventory the county was last told, as JSON
        self.parts: list[Part] = [
            self.downlink,
            self.uplink,
            Periodic("yimen-telemetry", config.telemetry.interval_s, self.health.report),
            Periodic("yimen-link-budget", 60.0, self.budget.save),
            Periodic("yimen-retention", 3600.0, self._expire, run_first=True),
            Periodic("yimen-clock", config.clock.poll_s, self._watch_clock),
            self.printer,
            # Polling /dev is hotplug detection without udev bindings: a device shows within 30 s.
            Periodic("yimen-inventory", 30.0, self._report_inventory),
            Periodic("yimen-config-watch", 1.0, self._watch_config),
        ]
        self.units: Any = None  # the window units, once _key_sources made them
        if self.fetcher is not None:
            self.parts += [self.fetcher, Periodic("yimen-update-trial", 1.0, self._trial().tick)]
        if config.provisioning is not None:
            self.parts.append(Periodic("yimen-enrol-watch", config.provisioning.retry_s, self._watch_enrolment))
        if config.cameras:
            from edge.cameras import Cameras
            from mqtt.live import LiveView
            from peripherals.camera import make_camera

            cameras = Cameras(make_camera(cam, self.media, throttle=self.budget.throttle) for cam in config.cameras)
            live = LiveView(
                cameras.by_window, self.uplink.publish_live, config.station.county, config.station.id, config.media
            )
            self.outbox.subscribe_events(cameras.on_events)  # a bad rating's clip, until the station logic asks
            for command in [*cameras.commands(), *live.commands()]:
                self.downlink.register(command)
            self.parts += [*cameras.by_window.values(), live]
        if self.station is not None:
            self.parts.append(self.station)
            self.parts += self._hall(self.station)
        # After the station, so they stop before it: a press is answered by a running station
        # (recorded, then acknowledged) or not at all, never by one that is shutting down.
        self.parts += self._key_sources()
        if config.simulate is not None and self.station is not None and config.service is not None:
            from peripherals.simulator.sim import SimulatedStation

            windows = [w.number for w in config.service.windows]
            codes = [c.code for c in config.service.clerks if c.code is not None]
            self.parts.append(SimulatedStation(config.simulate, self.station, windows, codes))
        interval = systemd.watchdog_interval()
        if interval is not None:
            # Last to start, first to stop: it vouches for the parts started before it.
            checks = [("outbox commit thread", self.outbox.committing), ("uplink thread", self.uplink.alive)]
            self.parts.append(systemd.Watchdog(interval, checks, self.outbox.responsive))

    def _key_sources(self) -> list[Part]:
        """Window units, GPIO buttons, keypads and card readers: each press goes to the station
        logic (or, in a gateway without one, is recorded as a `key` event); the station's LED
        changes go back to the window units."""
        windows = self.config.windows
        station = self.station
        on_key = None if station is None else partial(_press, station)
        sources: list[Part] = []
        if windows.with_units:
            from peripherals.window_unit.fwupdate import Bundle, Updates

            known = station.knows if station is not None else None
            firmware = Updates(Bundle.from_directory())  # units are brought to the firmware this release carries
            units = self.units = window_units(
                windows, self.outbox.append, on_key=on_key, known_key=known, firmware=firmware
            )
            if station is not None:
                station.on_led(lambda window, feedback: units.set_led(window, feedback.value))
                station.on_window(lambda window, shown: _show(units, window, shown))
            sources.append(units)
        if windows.with_gpio:
            from peripherals.gpio_buttons import gpio_buttons

            sources.append(gpio_buttons(windows, self.outbox.append, on_key=on_key))
        if windows.with_input_devices:
            from peripherals.evdev_input import evdev_inputs

            sources.append(evdev_inputs(windows, self.outbox.append, on_key=on_key))
        return sources

    def _on_message(self, topic: str, payload: bytes, properties: Any) -> None:
        """paho's thread: release chunks to the fetcher, everything else is a command."""
        to_fetcher = self.fetcher is not None and topic.split("/", 5)[4:5] == ["ota"]
        (self.fetcher.on_message if to_fetcher else self.downlink.on_message)(topic, payload, properties)  # type: ignore[union-attr]

    def _fetcher(self) -> Any:
        """Over-the-air releases: fetched only while the link is up and no event waits (ota/)."""
        from ota.fetch import Fetcher
        from ota.release import load_trusted

        config = self.config
        keys = (config.update.keys, config.storage.path / "identity" / "release-keys")
        return Fetcher(
            config.storage.path,
            config.station.county,
            config.station.id,
            trusted=lambda: load_trusted(*keys),
            emit=self.outbox.append,
            publish=lambda topic, payload: self.uplink.publish_control(topic, payload),
            may_send=lambda: (
                self.uplink.status()["state"] == "connected" and not any(self.outbox.stats()["backlog"].values())
            ),
            kbps=config.update.kbps,
        )

    def _trial(self) -> Any:
        """After an update: the checks the new version must pass before the updater keeps it."""
        from ota.trial import Trial

        def units_answer() -> bool:
            return self.units is None or all(u["state"] == "online" for u in self.units.status()["units"])

        checks = {
            "birth": lambda: self.uplink.status()["state"] == "connected",
            "puback": lambda: self.uplink.status()["delivered"] > 0,
            "window-units": units_answer,
        }
        return Trial(self.config.storage.path, self.outbox.append, checks)

    def _hall(self, station: Station) -> list[Part]:
        """The hall's functions as county commands and on the control socket for `yimen hall`,
        and the calling screen."""
        from edge.control import NAME, ControlSocket
        from edge.station.commands import hall_commands

        for command in hall_commands(station, "county"):
            self.downlink.register(command)
        parts: list[Part] = [ControlSocket(self.config.storage.path / NAME, hall_commands(station, "cli"))]
        if self.config.screen is not None:
            from edge.screen import Screen

            screen = Screen(self.config.screen, self.config.station.name or self.config.station.id, station.hall)
            station.on_view(screen.changed)
            parts.append(screen)
        return parts

    def request_exit(self, code: int) -> None:
        """Stop the gateway from inside (a command, a watch); `run` returns `code`."""
        self.exit_code = code
        self.stopping.set()

    def _watch_config(self) -> None:
        self.changes.watch(connected=self.uplink.status()["state"] == "connected")

    def _report_inventory(self) -> None:
        """An `inventory` event whenever what is plugged in differs from what the county was last told,
        checked at boot (the last report is kept in the outbox, so a reboot alone costs nothing) and
        every 30 s after."""
        found = json.dumps(inventory.scan(cameras=self.config.cameras), sort_keys=True)
        if found != self._inventory:
            self.outbox.append(NewEvent("inventory", Priority.NORMAL, json.loads(found)))
            self.outbox.set_meta("inventory", found)
            self._inventory = found

    def _watch_enrolment(self) -> None:
        """The broker refused our login: enrol again as soon as a new claim is at hand."""
        prov = self.config.provisioning
        if prov is None or self.uplink.status()["state"] != "needs_enrolment":
            return
        from provisioning import enrol  # the crypto is imported only by a station that needs it

        found = enrol.find_claim(prov, enrol.identity_dir(self.config))
        if found is not None:
            log.warning("our login was refused and a new claim is at %s: enrolling again", found.where)
            self.request_exit(EXIT_ENROL)

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
        if time.monotonic() >= self._clock_saved + CLOCK_SAVE_S:
            self.clock.save()
            self._clock_saved = time.monotonic()

    def start(self) -> None:
        self.outbox.set_meta("pid", str(os.getpid()))
        self._watch_clock()
        self.changes.report_outcome()
        self._inventory = self.outbox.get_meta("inventory")
        self._report_inventory()  # before the uplink starts: a drained backlog includes it
        for part in self.parts:
            part.start()

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()
        self.clock.save()
        self.outbox.set_meta("pid", "")
        self.budget.save()
        self.outbox.close()
        self.uploader.close()

    def status(self) -> dict[str, Any]:
        return {
            "uplink": self.uplink.status(),
            "outbox": self.outbox.stats(),
            "printer": self.printer.status(),
            "station": self.station.status() if self.station is not None else None,
        }


def _show(units: WindowUnitDriver, window: int, shown: dict[str, Any]) -> None:
    """A window's time-limit light and clerk and ticket, to its unit's LEDs and display."""
    units.set_limit(window, shown["lim"])
    units.show(window, shown["show"])


def _press(station: Station, press: KeyPress) -> str:
    """A key from any wiring, handed to the station logic; returns once its events are on disk,
    with the unit's feedback (`error`: refused, which a window unit shows)."""
    if press.key in ("signin", "card"):  # an evdev card reader says signin; a window unit's reader card
        return station.swipe(press.window, press.extra["card"], source=press.unit)
    if press.key == "code":
        return station.keypad_code(press.window, press.extra["code"], source=press.unit)
    return station.press(press.window, press.key, source=press.unit)


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
    # Handlers first: a SIGTERM during start-up (systemd stopping a slow start) is a clean stop too.
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    gateway = Gateway(config, stopping)
    gateway.start()
    systemd.notify(f"READY=1\nSTATUS=running: station {config.station.id}")
    try:
        # Woken each second: Python runs a signal's handler on the main thread only, and a SIGTERM
        # the kernel handed to another thread (a traced process's signals, under strace, land on
        # whichever thread was running) sets a flag that a main thread asleep on a lock never sees.
        while not gateway.stopping.wait(1.0):
            pass
    finally:
        log.info("stopping")
        systemd.notify("STOPPING=1")
        gateway.stop()
    return gateway.exit_code
