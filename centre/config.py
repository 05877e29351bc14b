"""The console's config: one TOML file, read with the same typed sections as a station's.

[centre]
county = "hengyang"            # the county whose stations are shown
name = "衡阳县"                 # shown in the page's title
# console = "county-a"         # this console's name (default: host name and config path): a stable client id

[broker]                       # the same section as a station's (mqtt/config.py)
host = "127.0.0.1"
port = 1883

[ingest]
workers = 1                    # >1: that many MQTT connections share the events ($share/...)
group = "yimen-centre"         # the shared-subscription group
gap_grace_s = 30               # a gap open this long asks the station for a replay
replay_retry_s = 60            # ... and again this often, at most `replay_tries` times
replay_tries = 3               # after that, what is still missing is recorded as lost
station_rate = 200             # messages stored per station per second at most (then dropped, counted)
station_burst = 12000          # ... after a burst of this many (a replay answer fits)

[store]
path = "centre.db"             # SQLite (default), relative to this file
# dsn = "postgresql://..."     # PostgreSQL instead
# schema = "yimen"             # PostgreSQL schema for the tables

[web]
host = "127.0.0.1"
port = 8080
# tls_cert = "console.crt"     # with tls_key: the console serves HTTPS itself (else see README:
# tls_key = "console.key"      #   a reverse proxy in front, and cookie_secure = true)
session_s = 28800              # a login lasts this long (8 h), then the page asks again
# cookie_secure = false        # default: true when tls_cert is set

[townships]                    # which stations each township sees: township accounts' scope
# xinqiao = ["hy-0001", "hy-0002"]

[alerts]                       # see centre/alerts.py for every rule and its meaning
# webhook = "https://..."      # a group-chat robot's URL; format = "wecom", "dingtalk" or "feishu"
[alerts.offline]               # one table per rule: threshold, escalate, holdoff_s, enabled
threshold = 10                 # minutes offline before the alert opens
escalate = 60                  # ... and when it is sent again, escalated

[media]
dir = "media"                  # uploaded media files: <dir>/<station>/<media id>.<ext>
max_mb = 10240                 # the county's disk budget for them: snapshots go first, evidence clips last
session_expiry_s = 86400       # the broker keeps chunks for a restarting console this long (MQTT 5)
live_view_s = 120              # an operator's live view lasts this long unless stopped (at most 1800)
"""

from __future__ import annotations

import re
import socket
import tomllib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from centre.alerts import AlertsConfig, parse_alerts
from edge.config import ID_PATTERN
from edge.configfile import ConfigError, Section
from mqtt.config import BrokerConfig, parse_broker

if TYPE_CHECKING:
    from centre.rollout import RolloutConfig


@dataclass(frozen=True)
class IngestConfig:
    workers: int = 1
    group: str = "yimen-centre"
    # Higher priorities overtake lower ones at a station with a backlog, so a gap is often
    # only "not yet": asking for a replay at once would make every reconnect a replay storm.
    gap_grace_s: float = 30.0
    replay_retry_s: float = 60.0
    replay_tries: int = 3
    # What one station may make the console store per second (events and media messages): a
    # token bucket deep enough for a replay answer of 10,000 events; beyond it, dropped and counted.
    station_rate: float = 200.0
    station_burst: float = 12_000.0

    @property
    def shared(self) -> bool:
        """Several workers split the stations through an MQTT 5 shared subscription."""
        return self.workers > 1


@dataclass(frozen=True)
class StoreConfig:
    path: Path
    dsn: str | None = None
    schema: str = "yimen"


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    session_s: int = 8 * 3600
    cookie_secure: bool = False


@dataclass(frozen=True)
class CentreConfig:
    source: Path
    county: str
    name: str
    broker: BrokerConfig
    ingest: IngestConfig
    store: StoreConfig
    web: WebConfig
    media_dir: Path
    media_max_bytes: int = 10 * 2**30
    media_session_expiry_s: float = 86_400.0
    live_view_s: int = 120  # how long an operator's live view runs unless stopped
    console: str = "console"  # this console's name among those sharing a broker: a stable client id
    townships: dict[str, str] = field(default_factory=dict)  # station -> township
    alerts: AlertsConfig = field(default_factory=lambda: parse_alerts(Section("alerts", {})))
    rollout: RolloutConfig | None = None  # over-the-air rollouts (centre/rollout.py), when configured


def parse(doc: dict, source: str) -> CentreConfig:
    top = Section("", doc, source=source)
    if not top.has("centre"):
        raise ConfigError(f"{source}: [centre] missing: county is required")
    centre = top.section("centre")
    county = centre.get_str("county", pattern=ID_PATTERN)
    name = centre.get_str("name", county)
    broker = parse_broker(top.section("broker"))

    ing = top.section("ingest")
    ingest = IngestConfig(
        workers=ing.get_int("workers", IngestConfig.workers, minval=1, maxval=64),
        group=ing.get_str("group", IngestConfig.group, pattern=r"[A-Za-z0-9_-]{1,64}"),
        gap_grace_s=ing.get_float("gap_grace_s", IngestConfig.gap_grace_s, minval=0.1),
        replay_retry_s=ing.get_float("replay_retry_s", IngestConfig.replay_retry_s, minval=0.1),
        replay_tries=ing.get_int("replay_tries", IngestConfig.replay_tries, minval=1),
        station_rate=ing.get_float("station_rate", IngestConfig.station_rate, minval=1),
        station_burst=ing.get_float("station_burst", IngestConfig.station_burst, minval=1),
    )
    ing.done()
    if ingest.shared and broker.protocol != "5":
        raise ing.error("workers", 'shared subscriptions need MQTT 5: set workers = 1, or [broker] protocol = "5"')

    st = top.section("store")
    store = StoreConfig(
        path=st.get_path("path", "centre.db"),
        dsn=st.get_str("dsn", None),
        schema=st.get_str("schema", StoreConfig.schema, pattern=r"[a-z_][a-z0-9_]{0,62}"),
    )
    st.done()

    wb = top.section("web")
    tls_cert, tls_key = wb.get_path("tls_cert", None), wb.get_path("tls_key", None)
    if (tls_cert is None) != (tls_key is None):
        raise wb.error("tls_key" if tls_key is None else "tls_cert", "set both tls_cert and tls_key, or neither")
    web = WebConfig(
        host=wb.get_str("host", WebConfig.host),
        port=wb.get_int("port", WebConfig.port, minval=0, maxval=65535),
        tls_cert=tls_cert,
        tls_key=tls_key,
        session_s=wb.get_int("session_s", WebConfig.session_s, minval=1, maxval=30 * 86400),
        cookie_secure=wb.get_bool("cookie_secure", tls_cert is not None),
    )
    wb.done()
    townships = _townships(top.section("townships"))
    alerts = parse_alerts(top.section("alerts"))

    md = top.section("media")
    media_dir = md.get_path("dir", "media")
    media_max_mb = md.get_int("max_mb", 10240, minval=1)
    live_view_s = md.get_int("live_view_s", CentreConfig.live_view_s, minval=1, maxval=1800)
    expiry = md.get_float("session_expiry_s", CentreConfig.media_session_expiry_s, minval=0, maxval=2**32 - 1)
    md.done()
    # The media connection keeps a broker session across restarts, so its client id must be the
    # same each time this console starts and differ between consoles: the host and this file.
    default_name = f"{socket.gethostname()[:16]}-{zlib.crc32(str(Path(source).resolve()).encode()):08x}"
    console = centre.get_str("console", re.sub(r"[^a-z0-9-]", "-", default_name.lower()), pattern=r"[a-z0-9-]{1,40}")

    centre.done()
    rollout = None
    if top.has("rollout"):
        from centre.rollout import parse_rollout

        rollout = parse_rollout(top.section("rollout"))
    unknown = top.unread()
    if unknown:
        raise ConfigError(f"{source}: [{unknown[0]}]: unknown section (check the spelling; see README)")
    return CentreConfig(
        Path(source), county, name, broker, ingest, store, web, media_dir,
        media_max_bytes=media_max_mb * 2**20, media_session_expiry_s=expiry, live_view_s=live_view_s, console=console,
        townships=townships, alerts=alerts, rollout=rollout,
    )  # fmt: skip


def _townships(section: Section) -> dict[str, str]:
    """`name = ["station", ...]` per township, turned round: each station's one township."""
    township_of: dict[str, str] = {}
    for township in section.unread():
        if not re.fullmatch(r"[\w-]{1,64}", township):
            raise section.error(township, "a township name is 1 to 64 letters, digits, _ or -")
        stations = section.get_list(township)
        for sid in stations:
            if not isinstance(sid, str) or not re.fullmatch(ID_PATTERN, sid):
                raise section.error(township, f"{sid!r} is not a station id")
            if sid in township_of:
                raise section.error(township, f"{sid} is in township {township_of[sid]} already")
            township_of[sid] = township
    return township_of


def load(path: str | Path) -> CentreConfig:
    """Read and check the console's config; every problem is a ConfigError naming file and key."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(doc, str(path))
