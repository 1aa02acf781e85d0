"""Policies, pipelines and httpx clients from configuration: a mapping, a TOML file or the
environment, with a registry of named policies.

    registry = Registry.from_toml("resilience.toml", env_prefix="RESILIENCE_")
    charge = registry.pipeline("payments")            # Pipeline of policies.payments.*
    client = registry.client("payments")              # httpx.Client from clients.payments
    registry.health()                                 # {"status": "ok", "circuit_breakers": ...}

A bad value fails when the registry is built, with the path of its key:
``policies.payments.retry.attempts: must be >= 1, got -1``. Nothing here needs a dependency
beyond the core's (TOML on Python 3.10 needs ``tomli``: ``pip install
'resilience-patterns[toml]'``; YAML is yours to parse).
"""

from __future__ import annotations

from resilience._public import publish as _publish
from resilience.config._kinds import PIPELINE_ORDER, build_policy
from resilience.config._registry import Registry, read_toml
from resilience.config._values import ConfigError, from_env

__all__ = [
    "PIPELINE_ORDER",
    "ConfigError",
    "Registry",
    "build_policy",
    "from_env",
    "read_toml",
]

_publish(__name__, globals(), __all__)
