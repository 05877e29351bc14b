"""Typed reading of one TOML section, in the manner of Klipper's configfile.

Each module that owns a config section parses it with a `Section`: every read names its
type and bounds, and `done()` rejects keys nobody read, so a typo is an error that names
section and key (`[broker] prot: unknown key`) instead of a silently ignored setting.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_MISSING = object()

# A key whose name (as parsed: quoting, dotting and escapes already undone) holds one of these
# words is a secret; `*_file` keys name where a secret is, which is fine to show.
_SECRET_WORDS = ("password", "secret", "token")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@:\s]*:)[^/@\s]*@")
REDACTED = "<redacted>"


def is_secret(key: str) -> bool:
    name = key.lower()
    return not name.endswith("_file") and any(word in name for word in _SECRET_WORDS)


def redact(value: Any, key: str = "") -> Any:
    """A parsed TOML value with every secret blanked: values under secret keys, and the
    password part of a URL (`rtmp://user:pw@host`). Works on the parsed document, never on the
    text, because TOML spells one key many ways (quoted, dotted, escaped, inline)."""
    if is_secret(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(rf"\1{REDACTED}@", value)
    return value


class ConfigError(ValueError):
    """A config file that cannot be used; the message names file, section, key and the fix."""


class Section:
    """One table of the TOML document, read option by option."""

    def __init__(self, name: str, raw: Any, *, source: str = "config") -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: [{name}] must be a table, not {type(raw).__name__}")
        self.name = name
        self.source = source
        self._raw: dict[str, Any] = raw
        self._read: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{self.name}] {key}: {problem}")

    def _show(self, key: str, value: Any) -> str:
        """A value as an error message may quote it: never a secret's."""
        return f"a {type(value).__name__} (not shown: a secret)" if is_secret(key) else repr(redact(value))

    def has(self, key: str) -> bool:
        return key in self._raw

    def _get(self, key: str, default: Any, kind: type | tuple[type, ...], kind_name: str) -> Any:
        self._read.add(key)
        if key not in self._raw:
            if default is _MISSING:
                raise self.error(key, "missing (required)")
            return default
        value = self._raw[key]
        # bool is an int in Python; a TOML `true` where a number belongs is a mistake.
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(key, f"expected {kind_name}, got {self._show(key, value)}")
        if not isinstance(value, kind):
            raise self.error(key, f"expected {kind_name}, got {self._show(key, value)}")
        return value

    def get_str(
        self, key: str, default: Any = _MISSING, *, pattern: str | None = None, choices: tuple[str, ...] = ()
    ) -> Any:
        value = self._get(key, default, str, "a string")
        if value is default:
            return value
        if pattern is not None and not re.fullmatch(pattern, value):
            raise self.error(key, f"{self._show(key, value)} does not match {pattern}")
        if choices and value not in choices:
            raise self.error(key, f"{self._show(key, value)} is not one of {', '.join(choices)}")
        return value

    def get_int(
        self, key: str, default: Any = _MISSING, *, minval: int | None = None, maxval: int | None = None
    ) -> Any:
        value = self._get(key, default, int, "an integer")
        if value is default:
            return value
        return self._bounded(key, value, minval, maxval)

    def get_float(
        self, key: str, default: Any = _MISSING, *, minval: float | None = None, maxval: float | None = None
    ) -> Any:
        value = self._get(key, default, (int, float), "a number")
        if value is default:
            return value
        return self._bounded(key, float(value), minval, maxval)

    def get_bool(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, default, bool, "true or false")

    def get_list(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, default, list, "a list")

    def get_path(self, key: str, default: Any = _MISSING) -> Any:
        value = self.get_str(key, default)
        if not isinstance(value, str):
            return value
        path = Path(value).expanduser()
        if not path.is_absolute():
            # Relative paths are relative to the config file, not to wherever the service started.
            path = Path(self.source).resolve().parent / path
        return path

    def section(self, key: str) -> Section:
        """A nested table, e.g. `[window_unit.w1]` read from `[window_unit]`."""
        self._read.add(key)
        name = f"{self.name}.{key}" if self.name else key
        return Section(name, self._raw.get(key, {}), source=self.source)

    def tables(self, key: str) -> list[Section]:
        """An array of tables (`[[windows]]`), each a Section named `windows #1`, `#2`... in errors."""
        prefix = f"{self.name}.{key}" if self.name else key
        return [Section(f"{prefix} #{i}", raw, source=self.source) for i, raw in enumerate(self.get_list(key, []), 1)]

    def _bounded(self, key: str, value: T, minval: Any, maxval: Any) -> T:
        if minval is not None and value < minval:
            raise self.error(key, f"{value} is below the minimum {minval}")
        if maxval is not None and value > maxval:
            raise self.error(key, f"{value} is above the maximum {maxval}")
        return value

    def unread(self) -> list[str]:
        """Keys present in the file that no reader asked for, sorted."""
        return sorted(set(self._raw) - self._read)

    def done(self) -> None:
        """Reject every key that no reader asked for."""
        unknown = self.unread()
        if unknown:
            raise self.error(unknown[0], "unknown key (check the spelling; see README for the options)")
