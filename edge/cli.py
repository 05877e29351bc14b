"""The `yimen` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import logging.handlers
import queue
import sys

from edge import __version__, systemd
from edge.configfile import ConfigError


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
    root = logging.getLogger()
    root.addHandler(logging.handlers.QueueHandler(records))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    import atexit

    atexit.register(listener.stop)


def _cmd_run(args: argparse.Namespace) -> int:
    from edge import app, config
    from edge.outbox import OutboxError

    cfg = config.load(args.config)
    try:
        return app.run(cfg)
    except OutboxError as exc:
        print(f"yimen: {exc}", file=sys.stderr)
        return 1


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


def _cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import run_demo

    return run_demo(seconds=args.seconds, rate=args.rate, workdir=args.dir)


def _cmd_watch(args: argparse.Namespace) -> int:
    import threading

    from mqtt.watch import CountyWatch

    watch = CountyWatch(args.host, args.port, args.county, on_line=print).start()
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    watch.stop()
    return 0


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

    demo = sub.add_parser("demo", help="a whole simulated station against a private local broker")
    demo.add_argument("--seconds", type=float, default=30.0, help="how long to run (0: until Ctrl-C)")
    demo.add_argument("--rate", type=float, default=5.0, help="simulated events per second")
    demo.add_argument("--dir", default=None, help="keep the demo's state here (default: a temp dir)")
    demo.set_defaults(func=_cmd_demo)

    watch = sub.add_parser("watch", help="county side: print what a county's stations publish")
    watch.add_argument("--host", default="127.0.0.1")
    watch.add_argument("--port", type=int, default=1883)
    watch.add_argument("--county", required=True)
    watch.set_defaults(func=_cmd_watch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"yimen: config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
