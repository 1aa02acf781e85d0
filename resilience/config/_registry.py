"""The registry: named policies built from a configuration, once each, on first use."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

from resilience import (
    CircuitBreaker,
    Pipeline,
    RetryBudget,
)
from resilience._clock import Clock
from resilience.config._kinds import KINDS, PIPELINE_ORDER, build, options
from resilience.config._values import ConfigError, Origins, as_mapping, from_env, join, merge
from resilience.http import TransportOptions

__all__ = ["Registry", "read_toml"]

_SECTIONS = ("defaults", "policies", "pipelines", "clients")
_KEYS: dict[type[Any], str] = {kind.cls: key for key, kind in KINDS.items()}
T = TypeVar("T")


def toml_reader(version: tuple[int, ...] = sys.version_info[:2]) -> Any:
    """The TOML module for this Python: ``tomllib`` from 3.11, ``tomli`` before (the ``toml``
    extra brings it)."""
    if version >= (3, 11):
        return importlib.import_module("tomllib")
    try:
        return importlib.import_module("tomli")
    except ImportError:
        raise ImportError(
            "reading TOML on Python 3.10 needs tomli: pip install 'resilience-patterns[toml]'"
        ) from None


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in a TOML file (``tomllib``; on Python 3.10 ``tomli``, from the ``toml``
    extra: ``pip install 'resilience-patterns[toml]'``)."""
    toml = toml_reader()
    with Path(path).open("rb") as file:
        try:
            loaded: dict[str, Any] = toml.load(file)
        except toml.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    return loaded


class Registry:
    """Named policies, pipelines and clients from one configuration mapping.

    The mapping (what ``tomllib``, ``json`` or ``yaml.safe_load`` return) has four tables:

    - ``defaults.<kind>``: settings every policy of that kind starts from;
    - ``policies.<name>.<kind>``: the policy of that kind named ``name`` (a dependency, usually:
      ``policies.payments.retry``, ``policies.payments.circuit_breaker``);
    - ``pipelines.<name>``: ``policies = [...]``, outermost first, each a reference
      ``"payments.retry"`` or an inline table ``{timeout = 1.0}``; without one, the pipeline
      named like a dependency nests its policies in the standard order;
    - ``clients.<name>``: an httpx client's options (``resilience.http``).

    The kinds are ``fallback``, ``deadline``, ``retry``, ``hedge``, ``adaptive_throttle``,
    ``circuit_breaker``, ``rate_limiter``, ``adaptive_concurrency``, ``bulkhead``, ``timeout``
    (the standard nesting order) and ``retry_budget``; each takes its class's keyword arguments.
    Durations are seconds or strings (``"250ms"``, ``"5s"``); exception filters are class names
    (``"ConnectionError"``, ``"httpx.TransportError"``); ``store = "<name>"`` picks one of the
    ``stores`` given here; ``budget = "<name>"`` shares the named retry budget.

    A name the file refers to (a pipeline's ``"payments.retry"``, a client's
    ``breaker = "payments"``, ``budget = "payments"``) must be declared,
    ``policies.<name>.<kind>``; an empty table is enough and takes ``defaults.<kind>``. A
    reference to anything else is a typo and fails at load, with a suggestion. From code,
    ``get`` is get-or-create: a name the file does not list is built from the defaults.

    ``env_prefix`` lays the environment over the mapping: with ``env_prefix="APP_"``,
    ``APP_POLICIES__PAYMENTS__RETRY__ATTEMPTS=4`` sets ``policies.payments.retry.attempts``
    (see ``from_env``). Everything is checked when the registry is built: a bad value raises
    ``ConfigError`` naming its key (and the variable that set it). Each policy is built once,
    on first use, and shared from then on; options that take functions are passed then, in
    code (``registry.get(Retry, "payments", on_result=is_503)``). Thread-safe.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        stores: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        env_prefix: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.origins: Origins = {}
        merged = dict(as_mapping(config or {}, "", self.origins))
        if env_prefix is not None:
            env = from_env(env_prefix, os.environ if environ is None else environ, self.origins)
            merged = merge(merged, env)
        self.clock = clock
        self._stores = dict(stores or {})
        self._built: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}
        self._lock = threading.RLock()
        self._tables = self._sections(merged)
        self._check()

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **options: Any) -> Registry:
        """A registry from a TOML file; ``options`` as for the constructor."""
        return cls(read_toml(path), **options)

    # -- the configuration ---------------------------------------------------------------------

    def _sections(self, config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        tables: dict[str, Mapping[str, Any]] = {}
        for key, value in config.items():
            if key not in _SECTIONS:
                close = difflib.get_close_matches(key, _SECTIONS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(key, f"unknown table{hint}; expected {', '.join(_SECTIONS)}")
            tables[key] = as_mapping(value, key, self.origins)
        for section in ("defaults", "policies", "pipelines", "clients"):
            tables.setdefault(section, {})
        for kind in tables["defaults"]:
            self._kind(kind, join("defaults", kind))
        for name, entry in tables["policies"].items():
            for kind in as_mapping(entry, join("policies", name), self.origins):
                self._kind(kind, join(join("policies", name), kind))
        return tables

    def _kind(self, kind: str, path: str) -> None:
        if kind not in KINDS:
            close = difflib.get_close_matches(kind, KINDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(path, f"unknown kind{hint}; expected one of {', '.join(KINDS)}")

    def _check(self) -> None:
        """Build everything once, to fail now rather than on first use; keep nothing."""
        checker = _Checker(self)
        for kind, table in self._tables["defaults"].items():
            options(KINDS[kind], table, join("defaults", kind), checker)
        for name, entry in self._tables["policies"].items():
            for kind in entry:
                checker.policy(kind, name)
        for name in self._tables["pipelines"]:
            checker.pipeline(name)
        from resilience.config._clients import check_client

        for name in self._tables["clients"]:
            check_client(checker, name)

    def _table(self, kind: str, name: str) -> tuple[object, str]:
        entry = self._tables["policies"].get(name, {})
        return entry.get(kind, {}), join(join("policies", name), kind)

    def _base(self, kind: str) -> tuple[object, str]:
        return self._tables["defaults"].get(kind, {}), join("defaults", kind)

    # -- what the builders need (kinds.Resolver) -----------------------------------------------

    def store(self, name: object, path: str) -> Any:
        """The store named ``name`` among those given to the registry."""
        if not isinstance(name, str) or name not in self._stores:
            known = ", ".join(sorted(self._stores)) or "none were given"
            raise ConfigError(path, f"names no store given to the registry ({known})", self.origins)
        return self._stores[name]

    def budget(self, name: str, path: str) -> RetryBudget:
        """The shared retry budget ``name`` (built on first use); the file must declare it."""
        found: RetryBudget = self._named("retry_budget", name, path)
        return found

    def _named(self, kind: str, name: str, path: str, *, spelt: bool = False) -> Any:
        """The policy a reference at ``path`` names: ``policies.<name>.<kind>`` must exist.
        ``spelt``: the reference spells ``"<name>.<kind>"`` (a pipeline step)."""
        _declared(self, kind, name, path, spelt=spelt)
        return self.get(kind, name)

    # -- getting policies ----------------------------------------------------------------------

    @overload
    def get(self, kind: type[T], name: str, **overrides: Any) -> T: ...

    @overload
    def get(self, kind: str, name: str, **overrides: Any) -> Any: ...

    def get(self, kind: type[Any] | str, name: str, **overrides: Any) -> Any:
        """The policy of ``kind`` named ``name``: ``registry.get(CircuitBreaker, "payments")``
        (typed), or by the configuration's key, ``registry.get("circuit_breaker", "payments")``.

        Built on first use from ``defaults.<kind>`` and ``policies.<name>.<kind>`` (or the
        defaults alone), then the same object every time. ``overrides`` are options from code
        (functions, such as ``on_result``); a later call may repeat them or give none, but not
        give others."""
        if not isinstance(kind, str):
            key = _KEYS.get(kind)
            if key is None:
                raise TypeError(f"kind must be a policy class or a configuration key, got {kind!r}")
            kind = key
        self._kind(kind, join(join("policies", name), kind))
        value, path = self._table(kind, name)
        base = self._base(kind)
        return self._once(
            (kind, name),
            overrides,
            lambda: build(
                KINDS[kind], value, path, self, name=name, base=base, overrides=overrides
            ),
        )

    def _once(self, key: tuple[str, str], code: dict[str, Any], make: Callable[[], Any]) -> Any:
        """The object built for ``key``, made by ``make`` on first use; ``code`` (options from
        code) may be repeated or left out later, not changed."""
        with self._lock:
            found = self._built.get(key)
            if found is None:
                found = self._built[key] = (make(), dict(code))
            built, used = found
            if code and any(used.get(option, _MISSING) is not v for option, v in code.items()):
                raise ValueError(
                    f"{key[0]} {key[1]!r} was built already with other options from code: "
                    "pass them on the first call only"
                )
            return built

    def pipeline(self, name: str) -> Pipeline:
        """The pipeline ``pipelines.<name>``, or, without one, the policies of
        ``policies.<name>`` in the standard order (outermost first). Built once."""
        with self._lock:
            found = self._built.get(("pipeline", name))
            if found is None:
                found = (_pipeline(self, name), {})
                self._built[("pipeline", name)] = found
            pipeline: Pipeline = found[0]
            return pipeline

    def client(self, name: str, **code: Any) -> Any:
        """The ``httpx.Client`` of ``clients.<name>``, built once (close it at shutdown).
        ``code``: the transport options a file cannot hold (``policy_key``, a dead-letter
        queue...), given on the first call."""
        return self._client(name, code, asynchronous=False)

    def async_client(self, name: str, **code: Any) -> Any:
        """The ``httpx.AsyncClient`` of ``clients.<name>``, built once (``aclose`` it)."""
        return self._client(name, code, asynchronous=True)

    def transport_options(self, name: str, **code: Any) -> TransportOptions:
        """The ``TransportOptions`` of ``clients.<name>``, for a transport you build yourself
        (``ResilientTransport.with_options(inner, options)``); each call builds them anew, with
        the registry's policies."""
        from resilience.config._clients import transport_options

        self._has_client(name)
        return transport_options(self, name, code)

    def _has_client(self, name: str) -> None:
        if name not in self._tables["clients"]:
            raise ConfigError(join("clients", name), "no such client in the configuration")

    def _client(self, name: str, code: dict[str, Any], *, asynchronous: bool) -> Any:
        from resilience.config._clients import build_client

        self._has_client(name)
        key = ("async_client" if asynchronous else "client", name)
        return self._once(
            key, code, lambda: build_client(self, name, code, asynchronous=asynchronous)
        )

    # -- health --------------------------------------------------------------------------------

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Every circuit breaker in use: the registry's, by name, and each client's breaker of
        its ``base_url`` origin, as ``"<client> <origin>"`` (once it has sent a request)."""
        with self._lock:
            built = dict(self._built)
        found = {
            name: policy for (kind, name), (policy, _) in built.items() if kind == "circuit_breaker"
        }
        from resilience.config._clients import client_breakers

        found.update(client_breakers(built))
        return found

    def health(self) -> dict[str, Any]:
        """A health report for an endpoint: ``status`` is ``"ok"`` while no breaker is open,
        ``"degraded"`` otherwise; ``circuit_breakers`` maps each breaker to its state."""
        states = {name: breaker.state.value for name, breaker in sorted(self.breakers().items())}
        status = "ok" if all(state == "closed" for state in states.values()) else "degraded"
        return {"status": status, "circuit_breakers": states}


_MISSING = object()


def _declared(resolver: Any, kind: str, name: str, path: str, *, spelt: bool) -> None:
    """Fail at ``path`` unless the configuration declares ``policies.<name>.<kind>``: a
    reference to a policy it does not list is a typo, not a request for the defaults."""
    policies: Mapping[str, Any] = resolver._tables["policies"]
    if kind in policies.get(name, {}):
        return
    if not name:
        raise ConfigError(path, f"must name a {kind}, got ''", resolver.origins)
    shown = f"policy '{name}.{kind}'" if spelt else f"{kind} {name!r}"
    problem = f"no {shown} in this configuration"
    if name not in policies:  # a misspelt name: suggest a declared one of this kind
        known = [other for other, entry in policies.items() if kind in entry]
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            suggestion = f"{close[0]}.{kind}" if spelt else close[0]
            raise ConfigError(path, f"{problem} (did you mean {suggestion!r}?)", resolver.origins)
    declare = f"declare [policies.{name}.{kind}] (an empty table takes defaults.{kind})"
    raise ConfigError(path, f"{problem}; {declare}", resolver.origins)


def _pipeline(resolver: Any, name: str) -> Pipeline:
    """Build pipeline ``name`` through ``resolver`` (a registry, or a checker)."""
    tables = resolver._tables
    path = join("pipelines", name)
    if name not in tables["pipelines"]:
        entry = tables["policies"].get(name)
        if entry is None:
            raise ConfigError(path, "no such pipeline, and no policies of that name")
        steps = [resolver.get(kind, name) for kind in PIPELINE_ORDER if kind in entry]
        return Pipeline(*steps, name=name)
    table = dict(as_mapping(tables["pipelines"][name], path, resolver.origins))
    listed = table.pop("policies", None)
    if not isinstance(listed, list) or not listed:
        raise ConfigError(join(path, "policies"), "must be a non-empty list of policies")
    steps = [
        _step(resolver, step, join(join(path, "policies"), i)) for i, step in enumerate(listed)
    ]
    try:
        return Pipeline(*steps, **{"name": name, **table})
    except (TypeError, ValueError) as exc:
        raise ConfigError(path, str(exc), resolver.origins) from None


def _step(resolver: Any, step: object, path: str) -> Any:
    """One pipeline step: ``"<name>.<kind>"`` (the registry's policy) or ``{<kind> = ...}``."""
    if isinstance(step, str):
        name, _, kind = step.rpartition(".")
        if not name or kind not in KINDS or kind == "retry_budget":
            raise ConfigError(
                path, f"must be '<name>.<kind>' (as 'payments.retry') or a table, got {step!r}"
            )
        return resolver._named(kind, name, path, spelt=True)
    table = as_mapping(step, path, resolver.origins)
    if len(table) != 1:
        raise ConfigError(path, f"must hold exactly one kind, as {{timeout = 1.0}}, got {step!r}")
    ((kind, value),) = table.items()
    resolver._kind(kind, join(path, kind))
    return build(KINDS[kind], value, join(path, kind), resolver, base=resolver._base(kind))


class _Checker:
    """Builds like the registry, keeping nothing: what ``Registry`` runs at load."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._tables = registry._tables
        self.origins = registry.origins
        self.clock = registry.clock

    def store(self, name: object, path: str) -> Any:
        return self._registry.store(name, path)

    def budget(self, name: str, path: str) -> RetryBudget:
        found: RetryBudget = self._named("retry_budget", name, path)
        return found

    def _named(self, kind: str, name: str, path: str, *, spelt: bool = False) -> Any:
        _declared(self, kind, name, path, spelt=spelt)
        return self.get(kind, name)

    def get(self, kind: str, name: str) -> Any:
        self._kind(kind, join(join("policies", name), kind))
        value, path = self._registry._table(kind, name)
        return build(KINDS[kind], value, path, self, name=name, base=self._base(kind))

    def policy(self, kind: str, name: str) -> Any:
        return self.get(kind, name)

    def pipeline(self, name: str) -> Pipeline:
        return _pipeline(self, name)

    def _kind(self, kind: str, path: str) -> None:
        self._registry._kind(kind, path)

    def _base(self, kind: str) -> tuple[object, str]:
        return self._registry._base(kind)
