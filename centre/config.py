"""The console's config: one TOML file, read with the same typed sections as a station's.

[centre]
county = "hengyang"            # the county whose stations are shown
name = "衡阳县"                 # shown in the page's title

[broker]                       # the same section as a station's (mqtt/config.py)
host = "127.0.0.1"
port = 1883

[ingest]
workers = 1                    # >1: that many MQTT connections share the events ($share/...)
group = "yimen-centre"         # the shared-subscription group
gap_grace_s = 30               # a gap open this long asks the station for a replay
replay_retry_s = 60            # ... and again this often, at most `replay_tries` times
replay_tries = 3               # after that, what is still missing is recorded as lost

[store]
path = "centre.db"             # SQLite (default), relative to this file
# dsn = "postgresql://..."     # PostgreSQL instead
# schema = "yimen"             # PostgreSQL schema for the tables

[web]
host = "127.0.0.1"
port = 8080

[media]
dir = "media"                  # uploaded media files: <dir>/<station>/<file name>
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
    rollout: RolloutConfig | None = None  # over-the-air rollouts (centre/rollout.py), when configured


def parse(doc: dict, source: str) -> CentreConfig:
    top = Section("", doc, source=source)
    if not top.has("centre"):
        raise ConfigError(f"{source}: [centre] missing: county is required")
    centre = top.section("centre")
    county = centre.get_str("county", pattern=ID_PATTERN)
    name = centre.get_str("name", county)
    centre.done()
    broker = parse_broker(top.section("broker"))

    ing = top.section("ingest")
    ingest = IngestConfig(
        workers=ing.get_int("workers", IngestConfig.workers, minval=1, maxval=64),
        group=ing.get_str("group", IngestConfig.group, pattern=r"[A-Za-z0-9_-]{1,64}"),
        gap_grace_s=ing.get_float("gap_grace_s", IngestConfig.gap_grace_s, minval=0.1),
        replay_retry_s=ing.get_float("replay_retry_s", IngestConfig.replay_retry_s, minval=0.1),
        replay_tries=ing.get_int("replay_tries", IngestConfig.replay_tries, minval=1),
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
    web = WebConfig(
        host=wb.get_str("host", WebConfig.host), port=wb.get_int("port", WebConfig.port, minval=0, maxval=65535)
    )
    wb.done()

    md = top.section("media")
    media_dir = md.get_path("dir", "media")
    md.done()

    rollout = None
    if top.has("rollout"):
        from centre.rollout import parse_rollout

        rollout = parse_rollout(top.section("rollout"))
    unknown = top.unread()
    if unknown:
        raise ConfigError(f"{source}: [{unknown[0]}]: unknown section (check the spelling; see README)")
    return CentreConfig(Path(source), county, name, broker, ingest, store, web, media_dir, rollout)


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
