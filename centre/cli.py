"""`yimen centre`: the county console's command line (found by edge/cli.py by module name)."""

from __future__ import annotations

import argparse
import sys

from centre import app, config, users_cli
from centre.store import StoreError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="yimen centre", description="the county console: ingest, store, web page")
    parser.add_argument("--config", required=True, help="the console's TOML config file")
    users_cli.add_parser(parser)
    args = parser.parse_args(argv)
    try:
        if args.centre_action == "user":
            return users_cli.run(config.load(args.config), args)
        return app.run(config.load(args.config))
    except StoreError as exc:
        print(f"yimen centre: {exc}", file=sys.stderr)
        return 1
