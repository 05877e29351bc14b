"""`yimen doctor`: is this station ready to run unattended, and if not, what must the installer do?

Each check prints one line: `OK` with what it found, or `PROBLEM` with what is wrong, where
(the file, config key or device) and what to do, in the words of the person at the station with
a laptop, not of the developer. The checks only look: the outbox is opened read-only, the
broker gets one real CONNECT under a client id of its own (so a running gateway is not thrown
off) and a clean DISCONNECT, and a camera is listed, not opened.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import socket
import sqlite3
import ssl
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as paho

from edge import configlayers, features
from edge import status as gateway_status
from edge.clock import ClockSource
from edge.config import Config, load
from edge.configfile import ConfigError
from edge.events import Event, NewEvent
from mqtt.client import make_client
from mqtt.config import BrokerConfig
from peripherals.printer import status as printer_status
from peripherals.window_unit import AUTO, WindowConfig
from peripherals.window_unit.port import find_units

# The user the unit file runs the gateway as (deploy/yimen.service).
SERVICE_USER = "yimen"
_MB = 1024 * 1024


@dataclass(frozen=True)
class Finding:
    check: str
    problem: bool
    what: str
    where: str = ""
    fix: str = ""

    def line(self) -> str:
        if not self.problem:
            return f"OK       {self.check}: {self.what}"
        where = f" (where: {self.where})" if self.where else ""
        return f"PROBLEM  {self.check}: {self.what}{where}. To fix: {self.fix}"


def ok(check: str, what: str) -> Finding:
    return Finding(check, False, what)


def problem(check: str, what: str, where: str, fix: str) -> Finding:
    return Finding(check, True, what, where, fix)


def default_user() -> str:
    """Whom to check file access for: the service user when root runs the doctor, else ourselves."""
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
            return SERVICE_USER
        except KeyError:
            pass
    return pwd.getpwuid(os.geteuid()).pw_name


# ----- config ---------------------------------------------------------------------------------


def check_config(path: Path) -> tuple[list[Finding], Config | None]:
    try:
        cfg = load(path)
    except ConfigError as exc:
        fix = "correct that line (the README's Config section lists every key)"
        return [problem("config", str(exc), "", fix)], None
    findings = []
    # The template's placeholders that no pattern rejects (host, user name, password).
    unfilled = [line.split("=")[0].strip() for line in path.read_text().splitlines() if '= "<' in line.split("#")[0]]
    if unfilled:
        findings.append(
            problem(
                "config",
                f"still holds the template's placeholders for {', '.join(unfilled)}",
                str(path),
                "replace each <...> with the value the county gave for this station",
            )
        )
    if cfg.broker.password is not None and path.stat().st_mode & stat.S_IROTH:
        findings.append(
            problem(
                "config",
                "holds the broker password and every user of this machine can read it",
                str(path),
                f"sudo chown root:{SERVICE_USER} {path} && sudo chmod 640 {path}",
            )
        )
    if not findings:
        findings.append(ok("config", f"{path}: station {cfg.station.id}, county {cfg.station.county}"))
    if cfg.layers is not None:
        findings.append(ok("config files", "; ".join(configlayers.describe(cfg.layers))))
    return findings, cfg


# ----- storage --------------------------------------------------------------------------------


def _may_write(directory: Path, user: str) -> bool:
    """Whether `user` may create files in `directory`, judged from its owner and mode bits."""
    entry = pwd.getpwnam(user)
    if entry.pw_uid == 0:
        return True
    st = directory.stat()
    if st.st_uid == entry.pw_uid:
        return st.st_mode & 0o300 == 0o300
    if st.st_gid in os.getgrouplist(user, entry.pw_gid):
        return st.st_mode & 0o030 == 0o030
    return st.st_mode & 0o003 == 0o003


def _used_bytes(directory: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def check_storage(cfg: Config, user: str) -> list[Finding]:
    path = cfg.storage.path
    where = f"[storage] path in {cfg.source}"
    # The gateway creates a missing path itself (systemd's StateDirectory does too): judge the
    # nearest directory that exists.
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return [problem("storage", f"{existing} is a file, not a directory", where, "point [storage] path elsewhere")]
    fs = os.statvfs(existing)
    if fs.f_flag & os.ST_RDONLY:
        return [
            problem(
                "storage",
                f"{existing} is on a read-only file system",
                where,
                "the SD card may be failing (the kernel remounts a failing card read-only): "
                "check `dmesg`, back up /var/lib/yimen and replace the card",
            )
        ]
    if not _may_write(existing, user):
        fix = f"sudo chown -R {user}:{user} {path} && sudo chmod 750 {path}"
        if existing != path:
            fix = f"sudo install -d -o {user} -g {user} -m 750 {path} (deploy/install.sh does this)"
        return [problem("storage", f"{existing} is not writable by user {user}", where, fix)]
    if user == pwd.getpwuid(os.geteuid()).pw_name:
        try:
            with tempfile.NamedTemporaryFile(dir=existing, prefix=".doctor-") as probe:
                probe.write(b"x")
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as exc:
            what = f"cannot write in {existing}: {exc.strerror}"
            return [problem("storage", what, where, "check `dmesg` for disk errors")]
    state = "exists" if existing == path else "will be created at the first start"
    return [
        ok("storage", f"{path} {state}; user {user} can write there"),
        _check_space(cfg, existing, fs),
        check_outbox(cfg),
    ]


def _check_space(cfg: Config, existing: Path, fs: os.statvfs_result) -> Finding:
    free = fs.f_bavail * fs.f_frsize
    used = _used_bytes(cfg.storage.path) if existing == cfg.storage.path else 0
    budget = cfg.storage.max_bytes
    if used + free < budget:
        room = max(1, (used + free) * 9 // 10 // _MB)
        return problem(
            "disk space",
            f"{free // _MB} MB free plus {used // _MB} MB already used is less than the "
            f"{budget // _MB} MB the gateway may use",
            f"[storage] max_mb in {cfg.source}",
            f"set max_mb = {room} or less, or free space on {existing}'s disk",
        )
    return ok("disk space", f"{free // _MB} MB free; budget {budget // _MB} MB, {used // _MB} MB used")


def check_outbox(cfg: Config) -> Finding:
    path = cfg.storage.outbox_path
    if not path.exists():
        return ok("outbox", f"{path} not created yet (the gateway creates it at its first start)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
            count = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        rows, count = [(str(exc),)], 0
    if rows != [("ok",)]:
        return problem(
            "outbox",
            f"{path} is damaged ({'; '.join(str(r[0]) for r in rows[:3])})",
            str(path),
            "start the gateway: it keeps the damaged file as outbox.db.corrupt-<time> for the county, "
            "starts a new outbox and reports what may be lost; if this recurs, replace the SD card",
        )
    return ok("outbox", f"{path} is intact ({count} events held)")


# ----- clock ----------------------------------------------------------------------------------


def check_clock(cfg: Config) -> Finding:
    now = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    if ClockSource(cfg.clock).synced():
        how = {"kernel": "synchronised by NTP", "file": "synchronised", "assume": "assumed right (RTC)"}
        return ok("clock", f"{how[cfg.clock.sync]}; it is {now}")
    if cfg.clock.sync == "file":
        where = f"[clock] sync_file {cfg.clock.sync_file}"
    else:
        where = "this machine's time service (systemd-timesyncd)"
    return problem(
        "clock",
        f"not synchronised yet (the Pi thinks it is {now}); events are stamped 'unsynced' until it is",
        where,
        "connect the Pi to the internet and allow NTP (UDP port 123); `timedatectl` shows progress. "
        "If there is no network here for hours at a time, fit a real-time clock module",
    )


# ----- broker ---------------------------------------------------------------------------------

# CONNACK reason codes (MQTT 5) and return codes (MQTT 3.1.1) that mean "who you are".
_BAD_PASSWORD = {0x86, 4}
_NOT_AUTHORISED = {0x87, 0x8C, 5}


def check_broker(cfg: Config) -> Finding:
    broker = cfg.broker
    address = f"{broker.host}:{broker.port}"
    where = f"[broker] in {cfg.source}"
    try:
        reason = _connect(broker, f"yimen-doctor-{cfg.station.county}-{cfg.station.id}")
    except socket.gaierror:
        return problem(
            "broker",
            f"cannot find the host {broker.host!r} (name lookup failed)",
            f"[broker] host in {cfg.source}",
            f"check the host name's spelling; check that the Pi is online (`ping {broker.host}`)",
        )
    except ConnectionRefusedError:
        return problem(
            "broker",
            f"nothing accepts connections at {address}",
            f"[broker] host and port in {cfg.source}",
            "check the port (usually 8883 with TLS, 1883 without) and ask the county whether the broker is up",
        )
    except ssl.SSLCertVerificationError as exc:
        return problem(
            "broker",
            f"the broker's TLS certificate was not accepted: {exc.verify_message}",
            f"[broker] ca_file in {cfg.source}, and the clock",
            "set ca_file to the county's CA certificate; a wrong clock makes valid certificates look "
            "expired, so check the clock line too",
        )
    except ssl.SSLError as exc:
        return problem(
            "broker",
            f"the TLS handshake with {address} failed ({exc.reason or exc})",
            f"[broker] tls and port in {cfg.source}",
            "TLS needs the broker's TLS port (usually 8883); without TLS use 1883 and tls = false",
        )
    except TimeoutError:
        return _no_answer(broker, where)
    except ConnectionResetError:
        return _hung_up(cfg)
    except OSError as exc:
        return problem(
            "broker",
            f"cannot reach {address}: {exc.strerror or exc}",
            "this Pi's network connection",
            "check the cable, Wi-Fi or SIM data; the Pi needs a route to the county",
        )
    if reason is None:
        return _no_answer(broker, where)
    if reason == "closed":
        return _hung_up(cfg)
    code = reason.value
    if code == 0:
        user = f"as user {broker.username!r}" if broker.username else "without a user name"
        tls = ", TLS" if broker.tls else ""
        return ok("broker", f"{address} accepted us {user} (MQTT {broker.protocol}{tls})")
    creds = f"[broker] username and password in {cfg.source}"
    if broker.username is None and code in _BAD_PASSWORD | _NOT_AUTHORISED:
        return problem(
            "broker",
            f"{address} requires a user name and password ({reason})",
            creds,
            "add the username and password the county issued for this station",
        )
    if code in _BAD_PASSWORD:
        return problem(
            "broker",
            f"{address} refused the credentials of user {broker.username!r}: {reason}",
            creds,
            "type the user name and password exactly as the county issued them; ask the county to reset them",
        )
    if code in _NOT_AUTHORISED:
        return problem(
            "broker",
            f"{address} refused user {broker.username!r}: {reason} (a wrong password, or a user not enabled)",
            creds,
            f"check the password; if it is right, ask the county to enable user {broker.username!r}",
        )
    return problem(
        "broker",
        f"{address} refused the connection: {reason} (0x{code:02X})",
        where,
        "tell the county this reason; the broker, not this station, must change",
    )


def _hung_up(cfg: Config) -> Finding:
    broker = cfg.broker
    fix = (
        "this port may not speak TLS: use the broker's TLS port (usually 8883), or tls = false on 1883"
        if broker.tls
        else 'the port may expect TLS (set tls = true) or another MQTT version (protocol = "3.1.1")'
    )
    return problem(
        "broker",
        f"{broker.host}:{broker.port} hung up without answering",
        f"[broker] tls, port and protocol in {cfg.source}",
        fix,
    )


def _no_answer(broker: BrokerConfig, where: str) -> Finding:
    return problem(
        "broker",
        f"no answer from {broker.host}:{broker.port} within {broker.connect_timeout_s:g} s",
        where,
        f"the network drops the connection: check the Pi's internet link and that port {broker.port} is allowed out",
    )


def _connect(broker: BrokerConfig, client_id: str) -> paho.ReasonCode | str | None:
    """One CONNECT with the configured credentials and TLS: the CONNACK's reason, "closed" if the
    broker hung up first, None if nothing came back in time. Raises OSError for network errors."""
    client = make_client(broker, client_id)
    result: dict[str, object] = {}
    client.on_connect = lambda _c, _u, _f, rc, _p: result.setdefault("reason", rc)
    client.on_disconnect = lambda _c, _u, _f, _rc, _p: result.setdefault("reason", "closed")
    client.connect(broker.host, broker.port, keepalive=max(5, broker.keepalive_s))
    deadline = time.monotonic() + broker.connect_timeout_s
    try:
        while "reason" not in result and time.monotonic() < deadline:
            client.loop(timeout=0.1)
        return result.get("reason")  # type: ignore[return-value]
    finally:
        client.disconnect()  # a clean goodbye; closes the socket in every state


# ----- peripherals ----------------------------------------------------------------------------


def _picamera2_cameras() -> list[dict] | str:
    """The cameras libcamera sees (listed, not opened: a running gateway may hold one), or why
    picamera2 cannot be imported."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        return str(exc)
    return Picamera2.global_camera_info()


def check_cameras(cfg: Config, _user: str) -> list[Finding]:
    found: list[dict] | str | None = None
    findings = []
    for i, cam in enumerate(cfg.cameras):
        check = f"camera {cam.window}"
        if cam.backend == "sim":
            findings.append(ok(check, "simulated (a test scene, no camera)"))
            continue
        found = _picamera2_cameras() if found is None else found
        if isinstance(found, str):
            findings.append(
                problem(
                    check,
                    f"picamera2 cannot be imported by yimen's Python ({found})",
                    "the venv /opt/yimen/venv",
                    "sudo apt install --no-install-recommends python3-picamera2, then run deploy/install.sh "
                    "again (its venv sees the OS's packages)",
                )
            )
        elif cam.camera < len(found):
            findings.append(ok(check, f"camera {cam.camera} is a {found[cam.camera].get('Model', 'camera')}"))
        else:
            findings.append(
                problem(
                    check,
                    f"no camera number {cam.camera} is connected ({len(found)} found)",
                    f"[cameras[{i}]] camera in {cfg.source}",
                    "power off, reseat the ribbon cable (contacts towards the board), power on; "
                    "`rpicam-hello --list-cameras` must list it",
                )
            )
    return findings


# Where deploy/install.sh puts deploy/70-yimen.rules, which gives each kind of device its group.
UDEV_RULES = "/etc/udev/rules.d/70-yimen.rules"


def _access(check: str, path: str, user: str, where: str, group: str, *, write: bool) -> Finding | None:
    """None when `user` may open the device at `path` (read, and write if `write`), judged from its
    owner, group and mode as the kernel would; else the problem and whether udev or membership is
    what is missing."""
    entry = pwd.getpwnam(user)
    st = os.stat(path)
    need = 0o6 if write else 0o4
    groups = os.getgrouplist(user, entry.pw_gid)
    if (
        entry.pw_uid == 0
        or (st.st_uid == entry.pw_uid and (st.st_mode >> 6) & need == need)
        or (st.st_gid in groups and (st.st_mode >> 3) & need == need)
        or st.st_mode & need == need
    ):
        return None
    try:
        owner_group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        owner_group = str(st.st_gid)
    what = (
        f"user {user} may not {'read and write' if write else 'read'} {path} "
        f"(group {owner_group}, mode {stat.S_IMODE(st.st_mode):o})"
    )
    if owner_group == group and (st.st_mode >> 3) & need == need:
        fix = f"sudo usermod -aG {group} {user} (deploy/install.sh does this), then sudo systemctl restart yimen"
    else:
        fix = (
            f"the device should belong to group {group} with mode 660, but no rule in {UDEV_RULES} matched it: "
            f"add one for its USB id (`udevadm info -q property -n {path}` shows ID_VENDOR_ID and ID_MODEL_ID), "
            "then `sudo udevadm control --reload && sudo udevadm trigger`"
        )
    return problem(check, what, where, fix)


def _device(check: str, path: str, user: str, where: str, group: str, *, write: bool, missing: str) -> Finding:
    """A configured device path: present and openable by the service user, or what to do."""
    if not os.path.exists(path):  # also a /dev/serial/by-id/ link whose device is unplugged
        return problem(check, f"{path} does not exist", where, missing)
    return _access(check, path, user, where, group, write=write) or ok(
        check, f"{path} present; user {user} can open it"
    )


_PLUG_UNIT = (
    "plug the window unit in (with a data cable, not a charge-only one); `ls -l /dev/serial/by-id/` lists "
    'what is connected: give that name as unit, or use unit = "auto" with the unit\'s uid'
)
_PLUG_INPUT = "plug it in; `ls -l /dev/input/by-id/` lists what is connected: give that name here"


def check_window_units(cfg: Config, user: str) -> list[Finding]:
    """Each window's devices: a named unit's port, keypad and card reader, GPIO buttons; and
    for `unit = "auto"`, whether enough units are plugged in to serve every such window."""
    findings = []
    for window in cfg.windows.windows:
        where = f"[[windows]] number = {window.number} in {cfg.source}"
        if window.unit is not None and window.unit != AUTO:
            check = f"window {window.number} unit"
            findings.append(
                _device(check, window.unit, user, f"unit of {where}", "dialout", write=True, missing=_PLUG_UNIT)
            )
        for what, path in (("keypad", window.keypad), ("card_reader", window.card_reader)):
            if path is not None:
                check = f"window {window.number} {what.replace('_', ' ')}"
                findings.append(
                    _device(check, path, user, f"{what} of {where}", "input", write=False, missing=_PLUG_INPUT)
                )
    if cfg.windows.with_gpio:
        findings.append(_check_gpio(cfg, user))
    auto = [w for w in cfg.windows.with_units if w.unit == AUTO]
    if auto:
        findings += _check_auto_units(cfg, auto, user)
    return findings


def _check_gpio(cfg: Config, user: str) -> Finding:
    numbers = ", ".join(str(w.number) for w in cfg.windows.with_gpio)
    where = f"gpio of windows {numbers} in {cfg.source}"
    chips = sorted(glob.glob("/dev/gpiochip*"))
    if not chips:
        return problem(
            "gpio buttons",
            "this machine has no GPIO chip (/dev/gpiochip*)",
            where,
            "GPIO buttons need a Raspberry Pi; on one, update its OS (`sudo apt full-upgrade`) and reboot",
        )
    return _access("gpio buttons", chips[0], user, where, "gpio", write=True) or ok(
        "gpio buttons", f"{', '.join(chips)} present; user {user} can open them"
    )


def _check_auto_units(cfg: Config, auto: list[WindowConfig], user: str) -> list[Finding]:
    check = 'window units (unit = "auto")'
    options = cfg.windows.options
    where = f"[window_unit] usb_ids ({', '.join(options.usb_ids)}) in {cfg.source}"
    found = find_units(options.usb_id_pairs, options.ports)
    findings = [f for f in (_access(check, path, user, where, "dialout", write=True) for path in found) if f]
    numbers = ", ".join(str(w.number) for w in auto)
    plugged = f"{len(found)} unit{'s' if len(found) != 1 else ''} plugged in ({', '.join(found) or 'none'})"
    if len(found) < len(auto):
        uids = ", ".join(f"{w.uid} for window {w.number}" for w in auto)
        findings.append(
            problem(
                check,
                f'{plugged} for {len(auto)} window{"s" if len(auto) != 1 else ""} with unit = "auto" ({numbers})',
                where,
                f"plug in the missing units ({uids}); a unit of another make needs its vendor:product id "
                "(`lsusb` shows it) in usb_ids",
            )
        )
    elif not findings:
        findings.append(
            ok(check, f"{plugged} for windows {numbers}; the gateway tells them apart by uid and reports strangers")
        )
    return findings


# In an installer's words: what a printer condition means and what to do about it.
_PRINTER_ADVICE = {
    printer_status.ABSENT: ("the port cannot be opened", "check the printer's USB cable and power"),
    printer_status.NO_ANSWER: (
        "the port opens but the printer does not answer its status query",
        "switch the printer on; check its cable; its self-test page (hold FEED while switching it on) shows its "
        "baud rate, which must match [printer] baudrate",
    ),
    printer_status.PAPER_OUT: (
        "the printer is out of paper",
        "put in a new roll, printing side towards the head, and close the cover",
    ),
    printer_status.COVER_OPEN: ("the printer's cover is open", "close the cover until it clicks"),
    printer_status.AUTOCUTTER_ERROR: (
        "the printer's paper cutter is stuck",
        "switch the printer off, open the cover, clear paper from the cutter, switch it on",
    ),
    printer_status.HEAD_ERROR: (
        "the print head is too hot or the printer's power is wrong",
        "let it cool; use the power adapter that came with it",
    ),
    printer_status.OFFLINE: ("the printer is offline", "press its FEED button once, or switch it off and on"),
}
_PRINTER_ERROR = ("the printer reports an error", "switch it off and on; if that does not clear it, it needs repair")


def _never_emits(_event: NewEvent) -> Event:
    raise AssertionError("the doctor only looks: a status reading emits no event")


def check_printer(cfg: Config, user: str) -> list[Finding]:
    """`[printer] port`: present and openable; with the gateway stopped, paper and cover too."""
    printer = cfg.printer
    if not printer.present or cfg.simulate is not None:
        return []
    assert printer.port is not None
    where = f"[printer] port in {cfg.source}"
    missing = "switch the printer on and plug in its USB cable; `ls -l /dev/serial/by-id/` lists its name"
    found = _device("printer", printer.port, user, where, "dialout", write=True, missing=missing)
    if found.problem:
        return [found]
    gateway = gateway_status.read(cfg)["gateway"]
    if gateway.startswith("running"):
        return [ok("printer", f"{found.what}; paper and cover not checked: the gateway, {gateway}, owns the port")]
    from peripherals.printer.driver import SerialPrinter  # python-escpos only for a station with a printer

    reading = SerialPrinter(printer, station_name="", emit=_never_emits).read_once()
    if reading.state in (printer_status.OK, printer_status.WARNING):
        near_end = (
            "; the roll is nearly finished: have a new one ready"
            if printer_status.PAPER_NEAR_END in reading.conditions
            else ""
        )
        return [ok("printer", f"{printer.port} answers and is ready to print{near_end}")]
    # The printer's own complaints are about the printer; ours (no port, no answer) about the config too.
    on_wire = f'[printer] port = "{printer.port}" and baudrate = {printer.baudrate} in {cfg.source}'
    return [
        problem(
            "printer",
            what + (f" ({reading.detail})" if reading.detail else ""),
            on_wire if condition in (printer_status.ABSENT, printer_status.NO_ANSWER) else printer.port,
            fix,
        )
        for condition in sorted(reading.conditions - {printer_status.PAPER_NEAR_END})
        for what, fix in [_PRINTER_ADVICE.get(condition, _PRINTER_ERROR)]
    ]


def check_features(cfg: Config, _user: str) -> list[Finding]:
    """Each configured feature's libraries import and its programs are installed (edge/features.py)."""
    found = []
    for need in features.needs(cfg):
        why = features.missing(need)
        what = f"{need.feature} needs {need.name}"
        found.append(ok("libraries", f"{what}: present") if why is None else problem("libraries", why, what, need.fix))
    return found


# Each configured kind of peripheral adds its check here; each gets the config and the service user.
PERIPHERAL_CHECKS: list[Callable[[Config, str], list[Finding]]] = [
    check_features,
    check_cameras,
    check_window_units,
    check_printer,
]


def run(config_path: Path, user: str | None = None, out: Callable[[str], None] = print) -> int:
    """Run every check, print one line each; 1 if any PROBLEM, else 0."""
    findings, cfg = check_config(config_path)
    for finding in findings:
        out(finding.line())
    if cfg is not None:
        user = user or default_user()
        steps: list[Callable[[], list[Finding]]] = [
            lambda: check_storage(cfg, user),
            lambda: [check_clock(cfg)],
            lambda: [check_broker(cfg)],
            *[(lambda c=c: c(cfg, user)) for c in PERIPHERAL_CHECKS],
        ]
        for step in steps:
            for finding in step():
                out(finding.line())
                findings.append(finding)
    problems = sum(f.problem for f in findings)
    if cfg is None:
        out("(the other checks need a config that loads)")
    out(f"{problems} problem{'s' if problems != 1 else ''} found" if problems else "all checks passed")
    return 1 if problems else 0
