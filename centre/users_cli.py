"""`yimen centre --config FILE user add|passwd|disable|enable|list`: accounts from the command line,
for the first admin and for scripts; the page (/users) does the rest.

A password is read from standard input (`--password-stdin`, one line, for scripts) or made up
and printed once; it is never an argument, where `ps` and the shell history would see it.
Every change is in the audit trail, by `cli:<the Unix user>`. The parser is built by
`yimen` on every machine, a station's too, so this module imports the county's libraries only
when it runs.
"""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from centre.accounts import User
    from centre.config import CentreConfig


def add_parser(centre: argparse.ArgumentParser) -> None:
    sub = centre.add_subparsers(dest="centre_action", required=False, metavar="user")
    user = sub.add_parser("user", help="console accounts: add, passwd, disable, enable, list")
    acts = user.add_subparsers(dest="user_action", required=True)
    add = acts.add_parser("add", help="a new account (prints a made-up password unless --password-stdin)")
    add.add_argument("name")
    add.add_argument("--role", required=True, help="admin, county, township or viewer")
    add.add_argument("--township", action="append", default=[], help="a township it sees (repeat for more)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    pw = acts.add_parser("passwd", help="set a new password (ends the account's open sessions)")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true")
    for name, text in (("disable", "refuse the account's logins and end its sessions"), ("enable", "undo disable")):
        acts.add_parser(name, help=text).add_argument("name")
    acts.add_parser("list", help="accounts, roles, townships").add_argument("--json", action="store_true")


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(the password, whether it was made up here and must be shown)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    return secrets.token_urlsafe(12), True


def run(config: CentreConfig, args: argparse.Namespace) -> int:
    from centre.accounts import AccountError, Accounts
    from centre.audit import Audit
    from centre.webstore import WebStore

    db = WebStore.open(config.store)
    accounts, audit = Accounts(db), Audit(db)
    actor = f"cli:{getpass.getuser()}"
    try:
        action, name = args.user_action, getattr(args, "name", None)
        shown = None
        if action == "list":
            users = accounts.list()
            print(json.dumps([u.as_dict() for u in users], ensure_ascii=False) if args.json else _table(users))
            return 0
        if action == "add":
            password, made = _password(args)
            user = accounts.add(name, password, args.role, args.township)
            audit.record(actor, "account-add", name, None, role=user.role, townships=list(user.townships))
            shown = password if made else None
        elif action == "passwd":
            password, made = _password(args)
            accounts.set_password(name, password)
            audit.record(actor, "account-passwd", name)
            shown = password if made else None
        else:
            accounts.set_disabled(name, action == "disable")
            audit.record(actor, f"account-{action}", name)
        print(f"{action}: {name}" + (f"\npassword: {shown}   (shown once: give it to its owner)" if shown else ""))
        return 0
    except AccountError as exc:
        print(f"yimen centre user {args.user_action}: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()


def _table(users: list[User]) -> str:
    lines = [f"{'name':<24} {'role':<9} {'state':<9} townships"]
    for u in users:
        lines.append(f"{u.name:<24} {u.role:<9} {'disabled' if u.disabled else 'active':<9} {','.join(u.townships)}")
    return "\n".join(lines)
