"""The `yimen` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import logging.handlers
import os
import queue
import sys
from pathlib import Path

from edge import __version__, systemd
from edge.configfile import ConfigError
from ota import cli as ota_cli

_log_listeners: list[logging.handlers.QueueListener] = []


def _setup_logging(verbose: bool) -> None:
    """Log through a queue: a stalled SD card must not stall the thread that logged."""
    records: queue.SimpleQueue = queue.SimpleQueue()
    handler = logging.StreamHandler(sys.stderr)
    # Under systemd, journald stamps each line itself and files it by the "<N>" priority prefix.
    handler.setFormatter(
        systemd.JournalFormatter()
        if systemd.stderr_is_journal()
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    listener = logging.handlers.QueueListener(records, handler)
    listener.start()
    _log_listeners.append(listener)
    root = logging.getLogger()
    root.addHandler(logging.handlers.QueueHandler(records))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    import atexit

    atexit.register(listener.stop)


def _restart(code: int) -> int:
    """Start `yimen` afresh. Under systemd, exit with `code` (75) and let `Restart=` start it
    again: systemd then sees a restart, not a stop that never ends (an exec after STOPPING=1
    is killed when TimeoutStopSec runs out). Run by hand or by tests, re-execute in this
    process (same pid); if that fails, exit with `code` all the same."""
    if systemd.under_systemd():
        print(f"yimen: restarting: exit {code}, systemd starts the gateway again", file=sys.stderr)
        return code
    for listener in _log_listeners:
        listener.stop()  # exec skips atexit: flush the log first
    try:
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    except OSError as exc:
        print(f"yimen: cannot restart myself ({exc}); exiting with {code} for systemd to restart", file=sys.stderr)
    return code


def _enrol(path: Path) -> bool:
    """Enrol in the foreground until a claim works; SIGTERM or Ctrl-C abandon it (False)."""
    import signal
    import threading

    from provisioning import enrol

    stop, done = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # Waiting for a claim may take days: up to systemd, not a start that times out.
    systemd.ready_while("enrolling: looking for a claim", done)
    try:
        return enrol.run(path, stop)
    finally:
        done.set()


def _cmd_run(args: argparse.Namespace) -> int:
    from edge import app, config, configset
    from edge.outbox import OutboxError
    from provisioning.config import needs_enrolment

    path = Path(args.config)
    configset.check_at_start(path)
    if needs_enrolment(path):
        return _restart(app.EXIT_RESTART) if _enrol(path) else 0
    cfg = config.load(path)
    try:
        code = app.run(cfg)
    except OutboxError as exc:
        print(f"yimen: {exc}", file=sys.stderr)
        return 1
    if code == app.EXIT_ENROL and not _enrol(path):
        return 0
    return _restart(code) if code in (app.EXIT_RESTART, app.EXIT_ENROL) else code


def _cmd_registrar(args: argparse.Namespace) -> int:
    """County side: `yimen registrar init|issue-token|reenrol|revoke|list|serve`."""
    from provisioning import registrar
    from provisioning.dynsec import DynSecError
    from provisioning.registry import Registry, RegistryError

    db = Path(args.db)
    try:
        if args.action == "init":
            password = Path(args.admin_password_file).read_text().strip()
            registry = registrar.init(
                db,
                args.county,
                args.broker,
                args.admin_user,
                password,
                args.station_broker,
                Path(args.station_ca),
                args.token_hours,
            )
            console = registry.settings()["console_username"]
            registry.close()
            print(f"registry {db} created; county {args.county}: registrar and console logins are on the broker")
            print(f'  console\'s [broker]: username = "{console}"')
            print(f'                      password_file = "{registrar.console_password_path(db)}"')
            return 0
        reg = registrar.Registrar(Registry(db))
        if args.action in ("issue-token", "reenrol"):
            out = Path(args.out)
            if args.action == "issue-token":
                issued = reg.issue(args.station, out, name=args.name, hours=args.hours)
            else:
                issued = reg.reenrol(args.station, out, hours=args.hours)
            print(f"claim for {issued.station}, valid until {time_text(issued.expires)}:")
            print(f"  {issued.file}   copy to the Pi's boot partition or a USB stick")
            print(f"  {issued.png}   print it; hold it up to the station's camera")
        elif args.action == "release-key":
            reg.trust_release_key(Path(args.file).read_text())
            print(f"stations enrolled from now on trust the release key in {args.file}")
        elif args.action == "revoke":
            reg.revoke(args.station)
            print(f"station {args.station} revoked: its login is deleted and its claims are void")
        elif args.action == "list":
            rows = reg.list()
            print(json.dumps(rows, indent=2, ensure_ascii=False) if args.json else registrar.render(rows))
        elif args.action == "serve":
            import threading

            service = registrar.Service(reg).start()
            with contextlib.suppress(KeyboardInterrupt):
                import signal

                stop = threading.Event()
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                stop.wait()
            service.stop()
    except (RegistryError, DynSecError, ValueError, OSError) as exc:
        print(f"yimen registrar: {exc}", file=sys.stderr)
        return 1
    return 0


def time_text(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(ts))


def _cmd_status(args: argparse.Namespace) -> int:
    from edge import config, status

    cfg = config.load(args.config)
    state = status.read(cfg)
    print(json.dumps(state, indent=2, ensure_ascii=False) if args.json else status.render(state))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge import doctor

    return doctor.run(Path(args.config), user=args.user)


def _cmd_watch(args: argparse.Namespace) -> int:
    import threading

    from mqtt.watch import CountyWatch

    watch = CountyWatch(args.host, args.port, args.county, on_line=print).start()
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    watch.stop()
    return 0


# The county's subcommands, by module name: the station's code never imports the county's
# (tests/test_house.py). Each module has `main(argv) -> int` with its own argument parser.
COUNTY_COMMANDS = {
    "centre": ("centre.cli", "county side: the console (ingest, store, web page)"),
    "demo": ("centre.demo", "a whole simulated station and county against a private local broker"),
}


def _cmd_county(args: argparse.Namespace) -> int:
    import importlib

    return importlib.import_module(COUNTY_COMMANDS[args.command][0]).main(args.rest)


def _cmd_hall(args: argparse.Namespace) -> int:
    """`yimen hall ACTION`: what a window's keys do, through the running gateway's control socket."""
    from edge import config, control

    cfg = config.load(args.config)
    given = {"window": args.window, "category": args.category, "ticket": args.ticket}
    request = {k: v for k, v in given.items() if v is not None} | ({"green": True} if args.green else {})
    path = cfg.storage.path / control.NAME
    try:
        reply = control.request(path, f"hall-{args.action}", request)
    except OSError as exc:
        print(f"yimen hall: the gateway is not answering on {path} ({exc}): is `yimen run` running?", file=sys.stderr)
        return 1
    if not reply["ok"]:
        print(f"yimen hall {args.action}: {reply['error']['message']} ({reply['error']['code']})", file=sys.stderr)
        return 1
    print(json.dumps(reply["result"], ensure_ascii=False))
    return 0


HALL_ACTIONS = ("issue", "call", "recall", "start", "done", "skip", "put-back", "put-back-ticket", "transfer")
HALL_ACTIONS += ("pause", "resume", "sign-out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yimen", description="Village-station edge gateway")
    parser.add_argument("--version", action="version", version=f"yimen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway in the foreground (SIGTERM stops it)")
    run.add_argument("--config", required=True, help="the station's TOML config file")
    run.set_defaults(func=_cmd_run)

    st = sub.add_parser("status", help="backlog, oldest undelivered, broker connection, last delivery")
    st.add_argument("--config", required=True)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_cmd_status)

    doc = sub.add_parser("doctor", help="check config, storage, clock, broker and peripherals; say what to fix")
    doc.add_argument("--config", required=True)
    doc.add_argument("--user", help="check file access for this user (default: yimen when run as root)")
    doc.set_defaults(func=_cmd_doctor)

    watch = sub.add_parser("watch", help="county side: print what a county's stations publish")
    watch.add_argument("--host", default="127.0.0.1")
    watch.add_argument("--port", type=int, default=1883)
    watch.add_argument("--county", required=True)
    watch.set_defaults(func=_cmd_watch)

    hall = sub.add_parser("hall", help="the hall: issue, call, transfer, pause... as a window's keys do")
    hall.add_argument("action", choices=HALL_ACTIONS)
    hall.add_argument("--config", required=True)
    hall.add_argument("--window", type=int, help="the window (call, recall, start, done, skip, put-back, ...)")
    hall.add_argument("--category", help="the category code (issue, transfer)")
    hall.add_argument("--ticket", help="the ticket number (put-back-ticket), e.g. A012")
    hall.add_argument("--green", action="store_true", help="issue: a green-channel ticket, called first")
    hall.set_defaults(func=_cmd_hall)

    reg = sub.add_parser("registrar", help="county side: enrol stations, issue claims, revoke")
    reg.add_argument("--db", required=True, help="the county's registry (SQLite; keep it 0600)")
    reg.set_defaults(func=_cmd_registrar)
    acts = reg.add_subparsers(dest="action", required=True)
    init = acts.add_parser("init", help="create the registry and the registrar's and the console's logins")
    init.add_argument("--county", required=True)
    init.add_argument("--broker", required=True, help="HOST:PORT of the county broker, as the registrar reaches it")
    init.add_argument("--station-broker", required=True, help="HOST:PORT of the TLS listener as stations reach it")
    init.add_argument("--station-ca", required=True, help="the CA certificate (PEM) of that listener's chain")
    init.add_argument("--admin-user", required=True, help="a dynamic-security admin (mosquitto_ctrl dynsec init)")
    init.add_argument("--admin-password-file", required=True, help="a file holding that admin's password")
    init.add_argument("--token-hours", type=float, default=72.0, help="how long a claim stays valid")
    for name, text in [("issue-token", "a one-time claim for a new station"), ("reenrol", "replace a station's Pi")]:
        act = acts.add_parser(name, help=text)
        act.add_argument("station", help="the station id, [a-z0-9-]{1,32}")
        act.add_argument("--out", default=".", help="writes OUT/<station>/yimen-provision.json and the QR PNG")
        act.add_argument("--hours", type=float, help="validity (default: as set at init)")
        if name == "issue-token":
            act.add_argument("--name", default="", help="the station's name, e.g. 新桥村便民服务站")
    acts.add_parser("revoke", help="delete a station's login; it can no longer connect").add_argument("station")
    acts.add_parser("release-key", help="enrolment replies carry this release key").add_argument("file")
    acts.add_parser("list", help="stations, their state and last status").add_argument("--json", action="store_true")
    acts.add_parser("serve", help="answer enrolment requests and record station status (foreground)")
    for name, (_module, text) in COUNTY_COMMANDS.items():
        # Its own parser reads the rest (main() hands it over), so `yimen centre --help` is its help.
        sub.add_parser(name, help=text, add_help=False).set_defaults(func=_cmd_county)
    ota_cli.add_commands(sub)  # yimen release keygen|build, yimen update apply
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.func is _cmd_county:
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"yimen: config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
