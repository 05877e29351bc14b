"""`yimen release ...` (county) and `yimen update apply` (station, as root): their arguments."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ota.apply import Layout


def _release(args: argparse.Namespace) -> int:
    from ota import build, release

    try:
        if args.action == "keygen":
            pub = release.keygen(Path(args.key))
            print(f"private key {args.key} (keep it offline, 0600); public key {pub}:")
            print(f"  {pub.read_text().strip()}")
            print("give the public key to install.sh --release-key on every station, or to the registrar")
        else:
            out = build.build(
                Path(args.source),
                Path(args.out),
                Path(args.key),
                platform=args.platform,
                python=args.python_version,
                find_links=tuple(Path(p) for p in args.find_links),
                no_index=args.no_index,
                chunk_size=args.chunk_kb * 1024,
            )
            manifest, _sig = build.open_release(out)
            what = f"{len(manifest.files)} files, {manifest.total_bytes} bytes"
            print(f"release {manifest.version} ({manifest.release_id}): {what}, for {manifest.platform}: {out}")
    except (build.BuildError, release.ReleaseError, ValueError, OSError) as exc:
        print(f"yimen release: {exc}", file=sys.stderr)
        return 1
    return 0


def _update(args: argparse.Namespace) -> int:
    from ota import apply

    layout = Layout(
        root=Path(args.root),
        state=Path(args.state),
        work=Path(args.work),
        keys=tuple(Path(k) for k in args.keys) or Layout.keys,
        health_s=args.health_s,
        restart=tuple(shlex.split(args.restart_cmd)),
        python=args.python,
    )
    return apply.run(layout)


def add_commands(sub: argparse._SubParsersAction) -> None:
    rel = sub.add_parser("release", help="county side: make release keys, build a signed release")
    rel.set_defaults(func=_release)
    acts = rel.add_subparsers(dest="action", required=True)
    keygen = acts.add_parser("keygen", help="a new Ed25519 release key (KEY, and its public key KEY.pem beside it)")
    keygen.add_argument("--key", required=True, help="where to write the private key (never overwritten)")
    build = acts.add_parser("build", help="the yimen wheel and every dependency wheel, signed")
    build.add_argument("--source", default=".", help="a yimen source tree or wheel (default: .)")
    build.add_argument("--key", required=True, help="the release private key (yimen release keygen)")
    build.add_argument("--out", required=True, help="the release goes to OUT/yimen-<version>/")
    build.add_argument("--platform", default="manylinux2014_aarch64", help="pip platform tag, or 'host'")
    build.add_argument("--python-version", default="3.11", help="the stations' Python (major.minor)")
    build.add_argument("--find-links", action="append", default=[], help="also look for wheels here")
    build.add_argument("--no-index", action="store_true", help="never ask the package index")
    build.add_argument("--chunk-kb", type=int, default=16, help="chunk size of the MQTT transfer (1..256)")

    upd = sub.add_parser("update", help="station side, as root: install a downloaded release, roll back if unhealthy")
    upd.set_defaults(func=_update)
    upd_acts = upd.add_subparsers(dest="action", required=True)
    app = upd_acts.add_parser("apply", help="one pass: finish an interrupted update, or install a ready one")
    app.add_argument("--root", default=str(Layout.root), help="holds versions/ and the current symlink")
    app.add_argument("--state", default=str(Layout.state), help="the gateway's storage path")
    app.add_argument("--work", default=str(Layout.work), help="the updater's own state (root only)")
    app.add_argument("--keys", action="append", default=[], help="a directory of trusted *.pem (repeatable)")
    app.add_argument("--health-s", type=float, default=Layout.health_s, help="how long the new version has")
    app.add_argument("--restart-cmd", default=" ".join(Layout.restart), help="restarts the gateway")
    app.add_argument("--python", default=Layout.python, help="the interpreter new venvs are made with")
