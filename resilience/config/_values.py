"""Values as configuration files and environments spell them, and errors that name their key.

Every error is a ``ConfigError`` whose message starts with the dotted path of the offending key
(``policies.payments.retry.attempts: must be >= 1, got -1``), and says which environment
variable set it when one did.
"""

from __future__ import annotations

import builtins
import importlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ConfigError",
    "Origins",
    "as_mapping",
    "duration",
    "exception_classes",
    "from_env",
    "merge",
]

# A dotted path -> the environment variable that set it (for error messages).
Origins = dict[str, str]


class ConfigError(ValueError):
    """Configuration that cannot be loaded: ``path`` is the dotted path of the offending key."""

    def __init__(self, path: str, problem: str, origins: Origins | None = None) -> None:
        source = (origins or {}).get(path)
        where = f"{path} (from ${source})" if source else path
        super().__init__(f"{where}: {problem}" if where else problem)
        self.path = path
        self.problem = problem


def join(path: str, key: object) -> str:
    """``path`` extended by ``key``: ``a.b`` + ``c`` -> ``a.b.c``; an index -> ``a.b[2]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def as_mapping(value: object, path: str, origins: Origins | None = None) -> Mapping[str, Any]:
    """``value`` if it is a table with string keys, else a ``ConfigError`` at ``path``."""
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a table, got {value!r}", origins)
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(path, f"keys must be strings, got {key!r}", origins)
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(value: object, path: str, origins: Origins | None = None) -> object:
    """Seconds from a number or a string such as ``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"``;
    anything else is returned as is, for the policy to judge (and name)."""
    if not isinstance(value, str):
        return value
    match = _DURATION.match(value)
    if match is None:
        problem = f"must be seconds or a duration such as '250ms', '5s', '2m', got {value!r}"
        raise ConfigError(path, problem, origins)
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds):
        raise ConfigError(path, f"must be a finite duration, got {value!r}", origins)
    return seconds


def exception_classes(value: object, path: str, origins: Origins | None = None) -> object:
    """Exception classes from their names: ``"ConnectionError"`` (a builtin) or a dotted path
    (``"httpx.TransportError"``), alone or in a list; a tuple for a list. Only classes derived
    from ``Exception`` resolve: a name is looked up, never called."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        problem = f"must be an exception name or a list of them, got {value!r}"
        raise ConfigError(path, problem, origins)
    classes: list[type[Exception]] = []
    for index, name in enumerate(names):
        where = path if isinstance(value, str) else join(path, index)
        classes.append(_exception_class(name, where, origins))
    return classes[0] if isinstance(value, str) else tuple(classes)


def _exception_class(name: object, path: str, origins: Origins | None) -> type[Exception]:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", name):
        raise ConfigError(path, f"must be an exception class name, got {name!r}", origins)
    module_name, _, attribute = name.rpartition(".")
    found: object = None
    if not module_name:
        found = getattr(builtins, name, None)
    else:
        try:
            found = getattr(importlib.import_module(module_name), attribute, None)
        except ImportError:
            found = None
    if not (isinstance(found, type) and issubclass(found, Exception)):
        raise ConfigError(path, f"names no exception class: {name!r}", origins)
    return found


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``: tables merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = merge(below, value)
        else:
            merged[key] = value
    return merged


def _env_value(text: str) -> object:
    """An environment value: JSON when it parses (numbers, true/false, lists, tables, quoted
    strings), otherwise the text itself (``5s``, ``ConnectionError``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def from_env(
    prefix: str, environ: Mapping[str, str], origins: Origins | None = None
) -> dict[str, Any]:
    """The configuration carried by the variables whose names start with ``prefix``.

    ``PREFIX_POLICIES__PAYMENTS__RETRY__ATTEMPTS=4`` sets ``policies.payments.retry.attempts``:
    after the prefix, ``__`` separates the levels and names are lower-cased (single
    underscores stay: ``FAILURE_RATE`` is ``failure_rate``). Values are JSON when they parse,
    text otherwise. ``origins``, when given, records which variable set which path.
    """
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"prefix must be a non-empty string, got {prefix!r}")
    found: dict[str, Any] = {}
    for variable in sorted(environ):
        if not variable.startswith(prefix) or len(variable) == len(prefix):
            continue
        parts = [part.lower() for part in variable[len(prefix) :].split("__")]
        if not all(parts):
            raise ConfigError(variable, "empty level in the variable's name (a triple underscore?)")
        table = found
        for depth, part in enumerate(parts[:-1]):
            below = table.setdefault(part, {})
            if not isinstance(below, dict):
                path = ".".join(parts[: depth + 1])
                raise ConfigError(path, f"set as a value and as a table (${variable})")
            table = below
        table[parts[-1]] = _env_value(environ[variable])
        if origins is not None:
            origins[".".join(parts)] = variable
    return found
