"""Public names report the public module users import them from, not the private one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import FunctionType

__all__ = ["publish"]


def publish(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Set ``__module__`` to ``module`` on the classes and functions ``names`` in ``namespace``
    that a private module defines, so reprs, tracebacks, docs and pickles say
    ``resilience.Retry`` rather than ``resilience._retry.retry.Retry`` (httpx does the same).

    A name already reported by a public module keeps it (the first public home wins); names
    absent from ``namespace`` (loaded lazily) are skipped.
    """
    for name in names:
        obj = namespace.get(name)
        if not isinstance(obj, (type, FunctionType)):
            continue  # constants, aliases and lazily loaded names
        home = obj.__module__
        if home.startswith("resilience.") and _is_private(home):
            obj.__module__ = module


def _is_private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))
