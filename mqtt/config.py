"""The `[broker]` section: where the county's broker is and how to talk to it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from edge.configfile import ConfigError, Section


@dataclass(frozen=True)
class BrokerConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "5"  # "5" or "3.1.1"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line or a traceback
    # Where enrolment stored the station's password (mode 0600), so the config holds no secret.
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 60
    # Our own in-flight window; the broker's Receive Maximum caps it further at connect.
    inflight: int = 20
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 5.0
    # After the broker refused our login: the same login again, on this slower jittered backoff
    # (a dynamic-security reload or a rewritten password file must not strand a station).
    refused_retry_s: float = 60.0
    refused_retry_max_s: float = 900.0
    connect_timeout_s: float = 5.0
    # MQTT 5: the broker keeps our command subscription (and the commands sent to us) this long
    # while we are away; 0: no session is kept (commands sent meanwhile are lost).
    session_expiry_s: int = 86400


def parse_broker(section: Section) -> BrokerConfig:
    cfg = BrokerConfig(
        host=section.get_str("host", BrokerConfig.host),
        port=section.get_int("port", BrokerConfig.port, minval=1, maxval=65535),
        protocol=section.get_str("protocol", BrokerConfig.protocol, choices=("5", "3.1.1")),
        username=section.get_str("username", None),
        password=section.get_str("password", None),
        password_file=section.get_path("password_file", None),
        tls=section.get_bool("tls", False),
        ca_file=section.get_path("ca_file", None),
        cert_file=section.get_path("cert_file", None),
        key_file=section.get_path("key_file", None),
        keepalive_s=section.get_int("keepalive_s", BrokerConfig.keepalive_s, minval=2, maxval=3600),
        inflight=section.get_int("inflight", BrokerConfig.inflight, minval=1, maxval=65535),
        reconnect_min_s=section.get_float("reconnect_min_s", BrokerConfig.reconnect_min_s, minval=0.05),
        reconnect_max_s=section.get_float("reconnect_max_s", BrokerConfig.reconnect_max_s, minval=0.1),
        refused_retry_s=section.get_float("refused_retry_s", BrokerConfig.refused_retry_s, minval=0.1),
        refused_retry_max_s=section.get_float("refused_retry_max_s", BrokerConfig.refused_retry_max_s, minval=0.1),
        session_expiry_s=section.get_int("session_expiry_s", BrokerConfig.session_expiry_s, minval=0, maxval=2**32 - 1),
        connect_timeout_s=section.get_float("connect_timeout_s", BrokerConfig.connect_timeout_s, minval=0.5),
    )
    section.done()
    if cfg.password_file is not None:
        if cfg.password is not None:
            raise section.error("password_file", "give password or password_file, not both")
        try:
            cfg = replace(cfg, password=cfg.password_file.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise section.error("password_file", f"cannot read {cfg.password_file}: {exc}") from None
    if cfg.password is not None and cfg.username is None:
        raise section.error("password", "given without username")
    if (cfg.cert_file is None) != (cfg.key_file is None):
        raise section.error("cert_file", "cert_file and key_file go together: give both or neither")
    if not cfg.tls and (cfg.ca_file or cfg.cert_file):
        raise section.error("tls", "ca_file/cert_file are set but tls is false: set tls = true")
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg, key)
        if path is not None and not path.is_file():
            raise ConfigError(f"{section.source}: [{section.name}] {key}: {path} does not exist")
    if cfg.reconnect_max_s < cfg.reconnect_min_s:
        raise section.error("reconnect_max_s", "must not be below reconnect_min_s")
    if cfg.refused_retry_max_s < cfg.refused_retry_s:
        raise section.error("refused_retry_max_s", "must not be below refused_retry_s")
    return cfg


@dataclass(frozen=True)
class MediaConfig:
    """The `[media]` section: how pictures and clips travel to the county.

    `upload_kbps` caps chunked media upload per station (a token bucket; events are never held
    back by it, and live-view frames are charged to it so that chunks yield while someone
    watches). `live_push_url`, where set, lets `live-view` push the window's frames through
    ffmpeg to the county's RTSP/RTMP server instead of sending JPEGs over MQTT; `{station}` and
    `{window}` in it are filled in.
    """

    upload_kbps: float = 128.0
    chunk_kb: int = 16
    live_interval_s: float = 2.0
    live_push_url: str | None = None


def parse_media(section: Section) -> MediaConfig:
    cfg = MediaConfig(
        upload_kbps=section.get_float("upload_kbps", MediaConfig.upload_kbps, minval=1.0, maxval=100_000.0),
        chunk_kb=section.get_int("chunk_kb", MediaConfig.chunk_kb, minval=1, maxval=256),
        live_interval_s=section.get_float("live_interval_s", MediaConfig.live_interval_s, minval=0.5, maxval=60.0),
        live_push_url=section.get_str("live_push_url", None, pattern=r"(rtsp|rtsps|rtmp|rtmps)://\S+"),
    )
    section.done()
    return cfg
