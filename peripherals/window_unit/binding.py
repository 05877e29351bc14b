"""Binding a window unit to a window by editing the config text: the pure half of `bind-unit`.

The gateway reports a unit it does not know (a `unit` event with state `unknown` and its uid);
binding it sets that uid, with `unit = "auto"`, on the window's `[[windows]]` table. The edit
goes through tomlkit so that the installer's comments and layout survive; the caller checks
the result with the gateway's own parser and applies it as `config-set` does.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from peripherals.window_unit import AUTO, UID_PATTERN


class BindError(ValueError):
    """The binding cannot be made; the message says why and what to do instead."""


def _number(table: MutableMapping[str, Any]) -> Any:
    number = table.get("number")
    return int(number) if isinstance(number, int) and not isinstance(number, bool) else number


def bind(text: str, uid: str, window: int) -> tuple[str, str | None]:
    """The config `text` with unit `uid` bound to `window`, and the uid it replaces (or None).

    Refuses a uid that is not a unit's, one another window already has, a window whose unit is
    on a fixed device path (that path decides), and a window the station does not have.
    """
    if not re.fullmatch(UID_PATTERN, uid):
        raise BindError(f"uid {uid!r} is not a unit's uid (4 to 64 lowercase hex digits, as the `unit` event gives it)")
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise BindError(f"the config file on the gateway is not valid TOML: {exc}") from None
    tables: list[MutableMapping[str, Any]] = list(doc.get("windows", []))
    for table in tables:
        if table.get("uid") == uid and _number(table) != window:
            raise BindError(f"unit {uid} is already window {_number(table)}'s: unbind it there first with config-set")
    target = next((t for t in tables if _number(t) == window), None)
    if target is None:
        served = {n for c in doc.get("categories", []) for n in c.get("windows", [])}
        if window not in served:
            known = sorted({_number(t) for t in tables} | served)
            raise BindError(
                f"window {window} is not one of this station's windows ({', '.join(map(str, known)) or 'none'}): "
                "add it to a [[categories]] table or a [[windows]] table with config-set first"
            )
        table = tomlkit.table()
        table.update({"number": window, "unit": AUTO, "uid": uid})
        table.add(tomlkit.nl())  # a blank line before whatever table follows, as people write them
        if "windows" not in doc:
            doc.append("windows", tomlkit.aot())
        doc["windows"].append(table)
        return tomlkit.dumps(doc), None
    unit = target.get("unit")
    if unit is not None and unit != AUTO:
        raise BindError(
            f"window {window} has its unit on the fixed device path {unit!r}, and that path decides its unit: "
            'set unit = "auto" (or remove it) with config-set to bind units by uid'
        )
    previous = target.get("uid")
    if previous == uid:
        raise BindError(f"unit {uid} is already window {window}'s; nothing to change")
    target["unit"] = AUTO
    target["uid"] = uid
    return tomlkit.dumps(doc), None if previous is None else str(previous)
