"""The gateway's config: one TOML file, parsed once into frozen dataclasses, checked as a whole.

Each section is parsed by the module that uses it (`[broker]` in mqtt/config.py,
`[simulate]` in peripherals/simulator, `[printer]` in peripherals/printer, the queue, ratings
and clerks in edge/station/config.py); this module owns the station-wide sections, assembles
the rest and rejects sections nobody knows. `[[windows]]` tables are shared: each owner reads
its own keys from every table, then this module rejects the keys nobody read. What it returns is passed onward;
no module ever sees the raw dict.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import tomlkit

from edge import configlayers
from edge.configfile import ConfigError, Section, redact
from edge.screen import ScreenConfig, parse_screen
from edge.station.config import StationSettings, parse_station
from mqtt.commands import Command
from mqtt.config import BrokerConfig, MediaConfig, parse_broker, parse_media
from mqtt.link import LinkConfig, parse_link
from ota.config import UpdateConfig, parse_update
from peripherals.camera import CameraConfig, parse_cameras
from peripherals.printer import PrinterConfig, parse_printer
from peripherals.simulator import SimulateConfig, default_station, parse_simulate
from peripherals.window_unit import WindowsConfig, parse_windows
from provisioning.config import ProvisioningConfig, parse_provisioning

ID_PATTERN = r"[a-z0-9-]{1,32}"


@dataclass(frozen=True)
class StationConfig:
    id: str
    county: str
    name: str


@dataclass(frozen=True)
class StorageConfig:
    path: Path
    max_mb: int = 512
    # Delivered events are kept this long so the county can ask for a replay.
    retention_days: float = 7.0

    @property
    def outbox_path(self) -> Path:
        return self.path / "outbox.db"

    @property
    def max_bytes(self) -> int:
        return self.max_mb * 1024 * 1024


@dataclass(frozen=True)
class ClockConfig:
    """How the gateway learns that the wall clock can be trusted (a Pi has no RTC).

    `kernel` asks adjtimex (synced once NTP has disciplined the clock), `assume` trusts it
    always (a machine with an RTC), `file` trusts it once `sync_file` exists
    (systemd-timesyncd writes /run/systemd/timesync/synchronized).
    """

    sync: str = "kernel"
    sync_file: Path | None = None
    poll_s: float = 5.0


@dataclass(frozen=True)
class TelemetryConfig:
    interval_s: float = 60.0


@dataclass(frozen=True)
class Config:
    source: Path
    station: StationConfig
    broker: BrokerConfig
    storage: StorageConfig
    clock: ClockConfig
    telemetry: TelemetryConfig
    simulate: SimulateConfig | None
    cameras: tuple[CameraConfig, ...] = ()
    printer: PrinterConfig = field(default_factory=PrinterConfig)
    # The queue, ratings and clerks; None when the config has none of their sections.
    service: StationSettings | None = None
    # How each window's keys reach the gateway: window units, GPIO buttons, keypads, card readers.
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    provisioning: ProvisioningConfig | None = None
    media: MediaConfig = field(default_factory=MediaConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    link: LinkConfig = field(default_factory=LinkConfig)
    screen: ScreenConfig | None = None  # the hall's calling screen (edge/screen.py)
    # The installer's file and the station's own laid over it, and which set what; None when
    # the config was parsed from a document rather than loaded from its files.
    layers: configlayers.Layers | None = None


def _station(section: Section) -> StationConfig:
    cfg = StationConfig(
        id=section.get_str("id", pattern=ID_PATTERN),
        county=section.get_str("county", pattern=ID_PATTERN),
        name=section.get_str("name", ""),
    )
    section.done()
    return cfg


def _storage(section: Section) -> StorageConfig:
    cfg = StorageConfig(
        path=section.get_path("path"),
        max_mb=section.get_int("max_mb", StorageConfig.max_mb, minval=1),
        retention_days=section.get_float("retention_days", StorageConfig.retention_days, minval=0),
    )
    section.done()
    return cfg


def _clock(section: Section) -> ClockConfig:
    cfg = ClockConfig(
        sync=section.get_str("sync", ClockConfig.sync, choices=("kernel", "assume", "file")),
        sync_file=section.get_path("sync_file", None),
        poll_s=section.get_float("poll_s", ClockConfig.poll_s, minval=0.1),
    )
    section.done()
    if (cfg.sync == "file") != (cfg.sync_file is not None):
        raise section.error("sync_file", 'give sync_file exactly when sync = "file"')
    return cfg


def _telemetry(section: Section) -> TelemetryConfig:
    cfg = TelemetryConfig(interval_s=section.get_float("interval_s", TelemetryConfig.interval_s, minval=1))
    section.done()
    return cfg


def parse(doc: dict, source: str) -> Config:
    """Build the Config from a parsed TOML document; raises ConfigError naming the bad key."""
    top = Section("", doc, source=source)

    def sec(name: str) -> Section:
        return top.section(name)

    station = _station(sec("station")) if top.has("station") else None
    if station is None:
        raise ConfigError(
            f"{source}: [station] missing: id and county are required (or add [provisioning] to enrol this station)"
        )
    if not top.has("storage"):
        raise ConfigError(f"{source}: [storage] missing: path is required")
    windows = top.tables("windows")
    simulate = parse_simulate(sec("simulate")) if top.has("simulate") else None
    service = parse_station(top, windows)
    reasons = tuple(key for key, _ in service.ratings.reasons) if service is not None else ()
    units = parse_windows(windows, top.section("window_unit") if top.has("window_unit") else None, reasons)
    if service is None and simulate is not None:
        sim_top = Section("", tomllib.loads(default_station(simulate.windows)), source=f"{source} (simulated station)")
        service = parse_station(sim_top, sim_top.tables("windows"))
    cfg = Config(
        source=Path(source),
        station=station,
        broker=parse_broker(sec("broker")),
        storage=_storage(sec("storage")),
        clock=_clock(sec("clock")),
        telemetry=_telemetry(sec("telemetry")),
        simulate=simulate,
        cameras=parse_cameras(top),
        printer=parse_printer(sec("printer")) if top.has("printer") else PrinterConfig(),
        service=service,
        windows=units,
        provisioning=parse_provisioning(sec("provisioning")) if top.has("provisioning") else None,
        media=parse_media(sec("media")),
        update=parse_update(sec("update")),
        link=parse_link(sec("link")),
        screen=parse_screen(sec("screen")) if top.has("screen") else None,
    )
    for window in windows:
        window.done()
    unknown = top.unread()
    if unknown:
        raise ConfigError(f"{source}: [{unknown[0]}]: unknown section (check the spelling; see README)")
    return cfg


def load(path: str | Path) -> Config:
    """Read and check the installer's config file with the station's own file laid over it
    (edge/configlayers.py); every problem is a ConfigError a person can act on."""
    layers = configlayers.read(Path(path))
    return replace(parse(layers.doc, str(path)), layers=layers)


def effective_text(config: Config) -> str:
    """The config as the gateway runs it: the installer's file as written, or, once the station
    has written its own, both merged into one document."""
    layers = config.layers
    if layers is None or layers.local is None or layers.local not in layers.set_by():
        return config.source.read_text(encoding="utf-8")
    return tomlkit.dumps(layers.doc)


def redacted_text(config: Config) -> str:
    """The config as parsed (the installer's file with the station's own laid over it), secrets
    blanked (`configfile.redact`): safe to send to the county.

    Written out again from the parsed document rather than edited as text: a comment may hold
    an old password and a multi-line string spans lines, so no pattern on the text is safe."""
    doc = config.layers.doc if config.layers is not None else tomllib.loads(config.source.read_text(encoding="utf-8"))
    return tomlkit.dumps(redact(doc))


def config_commands(config: Config) -> Command:
    return Command(
        "config-get",
        lambda _args: {"source": str(config.source), "toml": redacted_text(config)},
        doc="the running config file as parsed (no comments), secrets blanked",
    )
