"""Configuration from a mapping, a TOML file and the environment: what it builds, and how a bad
file fails (with the path of the key)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import certifi
import httpx
import pytest

from resilience import (
    Backoff,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    Hedge,
    Pipeline,
    RateLimiter,
    Retry,
    RetryBudget,
    Timeout,
)
from resilience.config import PIPELINE_ORDER, ConfigError, Registry, build_policy, from_env
from resilience.http import TransportOptions
from resilience.stores import MemoryStore
from resilience.testing import FakeClock, serve_wsgi

SETTINGS = """
[defaults.circuit_breaker]        # every breaker starts from these
failure_rate = 0.5
open_for = "30s"

[policies.payments.retry]
attempts = 3
on = ["ConnectionError", "httpx.TransportError"]
backoff = { initial = "10ms", maximum = "100ms", jitter = "none" }
budget = "payments"

[policies.payments.retry_budget]
ratio = 0.5

[policies.payments.circuit_breaker]
minimum_calls = 4

[policies.search.circuit_breaker]
failure_rate = 1.0
minimum_calls = 2
window_calls = 2

[policies.payments.timeout]
seconds = "1s"

[pipelines.checkout]
policies = [
  { fallback = { value = "queued" } },
  { deadline = "5s" },
  "payments.retry",
  "payments.circuit_breaker",
]

[clients.standard]                # nothing but the address: the standard pipeline
base_url = "{url}"

[clients.payments]
base_url = "{url}"
retry = "payments"
breaker = "payments"
deadline = "5s"
attempt_timeout = "1s"
"""


def _registry(tmp_path: Path, text: str, **options: Any) -> Registry:
    path = tmp_path / "resilience.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return Registry.from_toml(path, **options)


def test_a_toml_file_loads_into_working_policies(tmp_path: Path) -> None:
    """The acceptance file: two named breakers, a retry sharing a named budget, a pipeline."""
    clock = FakeClock()
    registry = _registry(tmp_path, SETTINGS.replace("{url}", "http://127.0.0.1:9"), clock=clock)
    payments, search = (
        registry.get(CircuitBreaker, "payments"),
        registry.get(CircuitBreaker, "search"),
    )
    assert (payments.name, search.name) == ("payments", "search")
    retry = registry.get(Retry, "payments")
    assert retry is registry.get(Retry, "payments")  # get-or-create: one object per name
    assert retry.budget is registry.get(RetryBudget, "payments")

    calls = []

    @registry.pipeline("checkout")
    def charge() -> str:
        calls.append(clock.now())
        raise ConnectionError("bank down")

    assert charge() == "queued"  # the fallback answers once the retries are spent
    assert len(calls) == 3 and clock.sleeps == [0.01, 0.02]  # attempts and backoff from the file
    assert charge() == "queued"  # 4 failures in the breaker's window: it opens (minimum_calls=4)
    assert payments.state is CircuitState.OPEN

    @search
    def lookup() -> None:
        raise TimeoutError("slow index")

    for _ in range(2):
        with pytest.raises(TimeoutError):
            lookup()
    with pytest.raises(CircuitOpenError) as refused:
        lookup()
    assert refused.value.retry_after == 30.0  # open_for from the shared defaults
    assert registry.health() == {
        "status": "degraded",
        "circuit_breakers": {"payments": "open", "search": "open"},
    }


@pytest.mark.server
def test_a_client_from_the_file_retries_against_a_real_server(tmp_path: Path) -> None:
    """``clients.payments`` builds an httpx client whose transport retries a 503 from a server
    on 127.0.0.1, with the registry's retry and breaker; the breaker shows in ``health()``."""
    answers = iter(["503 Service Unavailable", "200 OK"])

    def payments(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(next(answers), [("Content-Type", "text/plain")])
        return [b"ok"]

    with serve_wsgi(payments) as url:
        registry = _registry(tmp_path, SETTINGS.replace("{url}", url))
        client = registry.client("payments")
        assert client is registry.client("payments")
        with client:
            assert client.get("/charges/1").status_code == 200
        health = registry.health()
    assert health["status"] == "ok"
    assert f"payments {url}" in health["circuit_breakers"]
    options = registry.transport_options("payments")
    assert options.retry is registry.get(Retry, "payments")
    assert options.breaker is registry.get(CircuitBreaker, "payments")
    assert (options.deadline, options.attempt_timeout) == (5.0, 1.0)


def test_a_client_with_only_an_address_gets_the_standard_pipeline(tmp_path: Path) -> None:
    """``clients.standard`` names nothing but ``base_url``: its options are the standard
    pipeline's, every one (retry, budget, breaker, deadline, attempt timeout)."""
    registry = _registry(tmp_path, SETTINGS.replace("{url}", "http://127.0.0.1:9"))
    assert registry.transport_options("standard") == TransportOptions()
    with registry.client("standard") as client:
        assert str(client.base_url) == "http://127.0.0.1:9"


MALFORMED = [
    (
        "[policies.payments.retry]\nattempts = -1\n",
        "policies.payments.retry.attempts: must be >= 1, got -1",
    ),
    (
        "[policies.payments.circuit_breaker]\nfailure_rate = 1.5\n",
        "policies.payments.circuit_breaker.failure_rate: must be in (0, 1], got 1.5",
    ),
    (
        "[policies.payments.retry]\nattempts = 3\non = ['NoSuchError']\n",
        "policies.payments.retry.on[0]: names no exception class: 'NoSuchError'",
    ),
    (
        "[policies.search.circuit_breaker]\nopen_fr = '10s'\n",
        "policies.search.circuit_breaker.open_fr: unknown option (did you mean 'open_for'?)",
    ),
    (
        "[policies.payments.retry]\nbackoff = { initial = 'soon' }\n",
        "policies.payments.retry.backoff.initial: must be seconds or a duration",
    ),
    (
        "[policies.payments.retry]\n"
        "[pipelines.checkout]\npolicies = ['payments.retry', { timeout = -2 }]\n",
        "pipelines.checkout.policies[1].timeout.seconds: must be",
    ),
    (
        "[defaults.circuit_breaker]\nminimum_calls = 0\n[policies.a.circuit_breaker]\n",
        "defaults.circuit_breaker.minimum_calls: must be >= 1, got 0",
    ),
    (
        "[policies.payments.retyr]\nattempts = 2\n",
        "policies.payments.retyr: unknown kind (did you mean 'retry'?)",
    ),
    (
        "[clients.payments]\nbase_url = 'http://127.0.0.1:9'\nbreaker = 'nobody'\n"
        "[defaults.circuit_breaker]\nwindow = 'forever'\n",
        "defaults.circuit_breaker.window: must be seconds or a duration",
    ),
    (
        "[policies.payments.retry]\non_result = 'is_503'\n",
        "policies.payments.retry.on_result: cannot come from configuration",
    ),
    (
        "[clients.payments]\nbase_url = 'http://127.0.0.1:9'\ndeadlin = '5s'\n",
        "clients.payments.deadlin: unknown client option (did you mean 'deadline'?)",
    ),
    (
        "[clients.payments]\norigins_honour_keys = ['payments.internal']\n",
        "clients.payments.origins_honour_keys: must name origins like",
    ),
    (
        "[clients.payments]\nretry = { attempts = 0 }\n",
        "clients.payments.retry.attempts: must be >= 1, got 0",
    ),
    # A reference to a policy the file does not declare is a typo, not a request for defaults.
    (
        "[policies.payments.retry]\nattempts = 7\n"
        "[pipelines.checkout]\npolicies = ['paymnets.retry']\n",
        "pipelines.checkout.policies[0]: no policy 'paymnets.retry' in this configuration "
        "(did you mean 'payments.retry'?)",
    ),
    (
        "[policies.payments.retry]\nattempts = 7\n"
        "[pipelines.checkout]\npolicies = ['payments.circuit_breaker']\n",
        "pipelines.checkout.policies[0]: no policy 'payments.circuit_breaker' in this "
        "configuration; declare [policies.payments.circuit_breaker]",
    ),
    (
        "[policies.payments.retry]\nattempts = 7\n"
        "[clients.c]\nbase_url = 'http://127.0.0.1:9'\nretry = 'paymnets'\n",
        "clients.c.retry: no retry 'paymnets' in this configuration (did you mean 'payments'?)",
    ),
    (
        "[policies.payments.circuit_breaker]\nminimum_calls = 4\n"
        "[clients.c]\nbase_url = 'http://127.0.0.1:9'\nbreaker = 'paymnets'\n",
        "clients.c.breaker: no circuit_breaker 'paymnets' in this configuration "
        "(did you mean 'payments'?)",
    ),
    (
        "[policies.payments.retry]\nbudget = 'nobody'\n[policies.payments.retry_budget]\n",
        "policies.payments.retry.budget: no retry_budget 'nobody' in this configuration; "
        "declare [policies.nobody.retry_budget]",
    ),
    (
        "[policies.db.hedge]\ndelay = 'p95'\nbudget = 'dbs'\n[policies.db.retry_budget]\n",
        "policies.db.hedge.budget: no retry_budget 'dbs' in this configuration "
        "(did you mean 'db'?)",
    ),
    (
        "[pipelines.checkout]\npolicies = [{ retry = { budget = 'nobody' } }]\n",
        "pipelines.checkout.policies[0].retry.budget: no retry_budget 'nobody'",
    ),
    ("[clients.c]\nbreaker = ''\n", "clients.c.breaker: must name a circuit_breaker, got ''"),
    # httpx's own options are checked here, at their key, not by httpx at the client's.
    ("[clients.c]\nbase_url = 5\n", "clients.c.base_url: must be a URL string, got 5"),
    ("[clients.c]\nbase_url = '::'\n", "clients.c.base_url: not a valid URL"),
    ("[clients.c]\nproxy = 5\n", "clients.c.proxy: must be a URL string, got 5"),
    ("[clients.c]\nproxy = 'nope'\n", "clients.c.proxy: "),
    ("[clients.c]\nheaders = 5\n", "clients.c.headers: must be a table, got 5"),
    ("[clients.c]\nheaders = { x-a = 1 }\n", "clients.c.headers.x-a: must be a string, got 1"),
    ("[clients.c]\nparams = 5\n", "clients.c.params: must be a table, got 5"),
    ("[clients.c]\ncookies = 5\n", "clients.c.cookies: must be a table, got 5"),
    (
        "[clients.c]\nfollow_redirects = 'yes'\n",
        "clients.c.follow_redirects: must be true or false, got 'yes'",
    ),
    ("[clients.c]\ntrust_env = 1\n", "clients.c.trust_env: must be true or false, got 1"),
    ("[clients.c]\nhttp2 = 'x'\n", "clients.c.http2: must be true or false, got 'x'"),
    (
        "[clients.c]\nmax_redirects = -1\n",
        "clients.c.max_redirects: must be an integer >= 0, got -1",
    ),
    ("[clients.c]\nverify = 5\n", "clients.c.verify: must be true, false or the path"),
    (
        "[clients.c]\nverify = '/no/such/bundle.pem'\n",
        "clients.c.verify: cannot load a CA bundle from '/no/such/bundle.pem'",
    ),
    ("[clients.c]\ndefault_encoding = 5\n", "clients.c.default_encoding: must be an encoding"),
    ("[clients.c]\ntimeout = -1\n", "clients.c.timeout: must be > 0 seconds, got -1"),
    ("[clients.c]\ntimeout = true\n", "clients.c.timeout: must be > 0 seconds, got True"),
    (
        "[clients.c]\nlimits = { max_connections = 'x' }\n",
        "clients.c.limits.max_connections: must be an integer >= 0, got 'x'",
    ),
    (
        "[clients.c]\nlimits = { max_conections = 5 }\n",
        "clients.c.limits.max_conections: unknown option (did you mean 'max_connections'?)",
    ),
    (
        "[clients.c]\nlimits = { keepalive_expiry = 'later' }\n",
        "clients.c.limits.keepalive_expiry: must be seconds or a duration",
    ),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_a_malformed_file_fails_at_load_with_the_key_path(
    tmp_path: Path, text: str, message: str
) -> None:
    """Each bad file fails when the registry is built, and the message starts with the path of
    the offending key."""
    with pytest.raises(ConfigError) as failed:
        _registry(tmp_path, text)
    assert str(failed.value).startswith(message), str(failed.value)


def test_a_file_that_is_not_toml_names_the_file(tmp_path: Path) -> None:
    """A syntax error names the file and says it is not valid TOML."""
    with pytest.raises(ConfigError, match=r"resilience\.toml: not valid TOML"):
        _registry(tmp_path, "[policies.payments\n")


def test_the_environment_overrides_the_file_and_is_named_in_errors(tmp_path: Path) -> None:
    """``env_prefix`` lays variables over the file (``__`` between levels, JSON values); a bad
    variable's error names the variable."""
    environ = {
        "APP_POLICIES__PAYMENTS__RETRY__ATTEMPTS": "5",
        "APP_POLICIES__PAYMENTS__RETRY__ON": '["TimeoutError"]',
        "APP_POLICIES__SEARCH__CIRCUIT_BREAKER__OPEN_FOR": "2m",
        "OTHER_POLICIES__X__RETRY__ATTEMPTS": "0",
    }
    clock = FakeClock()
    registry = _registry(
        tmp_path,
        SETTINGS.replace("{url}", "http://127.0.0.1:9"),
        env_prefix="APP_",
        environ=environ,
        clock=clock,
    )
    calls = []

    @registry.get(Retry, "payments")
    def charge() -> None:
        calls.append(1)
        raise TimeoutError("slow bank")

    with pytest.raises(TimeoutError):
        charge()
    assert len(calls) == 5  # attempts and on= from the environment, over the file's 3
    breaker = registry.get(CircuitBreaker, "search")
    breaker.open()
    with pytest.raises(CircuitOpenError) as refused:
        breaker(lambda: None)()
    assert refused.value.retry_after == 120.0  # "2m"

    bad = {"APP_POLICIES__PAYMENTS__RETRY__ATTEMPTS": "-1"}
    with pytest.raises(ConfigError) as failed:
        Registry({}, env_prefix="APP_", environ=bad)
    assert str(failed.value) == (
        "policies.payments.retry.attempts (from $APP_POLICIES__PAYMENTS__RETRY__ATTEMPTS): "
        "must be >= 1, got -1"
    )


def test_from_env_reads_levels_and_values() -> None:
    """Variables become nested tables: names lower-cased, values JSON or text."""
    environ = {
        "RES_DEFAULTS__RETRY__ATTEMPTS": "4",
        "RES_POLICIES__BANK__TIMEOUT__SECONDS": "250ms",
        "RES_POLICIES__BANK__RETRY__ON": '["ConnectionError"]',
        "UNRELATED": "1",
    }
    assert from_env("RES_", environ) == {
        "defaults": {"retry": {"attempts": 4}},
        "policies": {
            "bank": {"timeout": {"seconds": "250ms"}, "retry": {"on": ["ConnectionError"]}}
        },
    }


def test_a_mapping_from_json_works_as_well(tmp_path: Path) -> None:
    """The registry takes any mapping: what ``json.loads`` returns builds the same policies."""
    config = json.loads(
        '{"policies": {"bank": {"retry": {"attempts": 2}, "timeout": 0.5,'
        ' "circuit_breaker": {"minimum_calls": 5}}}}'
    )
    registry = Registry(config)
    pipeline = registry.pipeline("bank")  # no pipelines.bank: the standard nesting order
    assert isinstance(pipeline, Pipeline)
    assert [type(step) for step in pipeline.policies] == [Retry, CircuitBreaker, Timeout]
    assert registry.get(Timeout, "bank").seconds == 0.5


def test_get_or_create_uses_the_defaults_for_unlisted_names() -> None:
    """A name the file does not list is built from ``defaults.<kind>`` on first use."""
    registry = Registry({"defaults": {"circuit_breaker": {"minimum_calls": 3, "open_for": "1m"}}})
    inventory = registry.get(CircuitBreaker, "inventory")
    assert inventory is registry.get(CircuitBreaker, "inventory")
    assert inventory.name == "inventory"
    assert registry.health() == {"status": "ok", "circuit_breakers": {"inventory": "closed"}}


def test_code_only_options_are_given_on_first_use_only() -> None:
    """Functions come from code on the first call; later calls may repeat them, not change them."""
    registry = Registry({"policies": {"payments": {"retry": {"attempts": 2}}}})

    def is_503(response: object) -> bool:
        return response == 503

    retry = registry.get(Retry, "payments", on_result=is_503)
    assert registry.get(Retry, "payments") is retry
    assert registry.get(Retry, "payments", on_result=is_503) is retry
    with pytest.raises(ValueError, match="built already"):
        registry.get(Retry, "payments", on_result=lambda response: False)
    assert retry(lambda: 503)() == 503  # retried (on_result), then the last result returned


def test_stores_are_named_and_budgets_shared() -> None:
    """``store = "<name>"`` picks a store given to the registry; two retries naming one budget
    share it; an unknown store fails with the key's path."""
    store = MemoryStore()
    registry = Registry(
        {
            "policies": {
                "api": {"rate_limiter": {"rate": 10, "burst": 5, "store": "main"}},
                "a": {"retry": {"budget": "shared"}},
                "b": {"retry": {"budget": "shared"}},
                "shared": {"retry_budget": {}},  # declared: an empty table takes the defaults
            }
        },
        stores={"main": store},
    )
    assert registry.get(RateLimiter, "api").try_acquire().allowed
    assert registry.get(Retry, "a").budget is registry.get(Retry, "b").budget
    assert isinstance(registry.get(Retry, "a").budget, RetryBudget)
    with pytest.raises(ConfigError, match=r"^policies\.api\.rate_limiter\.store: names no store"):
        Registry({"policies": {"api": {"rate_limiter": {"rate": 10, "store": "redis"}}}})


def test_build_policy_alone() -> None:
    """``build_policy`` builds one policy from its table or a bare value, paths from the kind."""
    retry = build_policy("retry", {"attempts": 4, "backoff": {"initial": "100ms"}})
    assert isinstance(retry, Retry) and isinstance(retry.backoff, Backoff)
    assert retry.backoff.initial == 0.1
    assert build_policy("timeout", "2s").seconds == 2.0
    with pytest.raises(ConfigError, match=r"^retry\.backoff\.maximum: "):
        build_policy("retry", {"backoff": {"maximum": -1}})
    with pytest.raises(ConfigError, match=r"^retri: unknown kind"):
        build_policy("retri", {})


def test_the_standard_nesting_order() -> None:
    """Without a pipeline, a dependency's policies nest fallback outermost, timeout innermost."""
    assert PIPELINE_ORDER[0] == "fallback" and PIPELINE_ORDER[-1] == "timeout"
    assert PIPELINE_ORDER.index("retry") < PIPELINE_ORDER.index("circuit_breaker")
    assert PIPELINE_ORDER.index("deadline") < PIPELINE_ORDER.index("retry")


def test_an_unknown_table_is_refused() -> None:
    """A misspelt top-level table fails with a suggestion instead of being ignored."""
    with pytest.raises(ConfigError, match=r"^polices: unknown table \(did you mean 'policies'\?\)"):
        Registry({"polices": {}})


def test_adaptive_policies_and_a_percentile_hedge_from_configuration() -> None:
    """Limit algorithms nest by name (a window over Vegas); a hedge may wait for a latency
    percentile and spend a shared budget; an unknown algorithm names its key."""
    registry = Registry(
        {
            "policies": {
                "db": {
                    "adaptive_concurrency": {
                        "algorithm": {"windowed": {"algorithm": {"vegas": {"max_limit": 50}}}},
                        "max_waiting": 10,
                        "max_wait": "50ms",
                    },
                    "hedge": {"delay": "p95", "budget": "db"},
                    "adaptive_throttle": {"k": 1.5, "on": "ConnectionError"},
                    "retry_budget": {},
                },
            }
        }
    )
    pipeline = registry.pipeline("db")
    kinds = [type(policy).__name__ for policy in pipeline.policies]
    assert kinds == ["Hedge", "AdaptiveThrottle", "AdaptiveConcurrency"]
    assert registry.get(Hedge, "db")._settings["budget"] is registry.get(RetryBudget, "db")
    assert registry.get(Hedge, "db").delay == "p95"
    with pytest.raises(ConfigError, match=r"^policies\.db\.adaptive_concurrency\.algorithm: "):
        Registry({"policies": {"db": {"adaptive_concurrency": {"algorithm": "cubic"}}}})


def test_get_by_class_or_by_key_returns_the_same_policy() -> None:
    """``get(CircuitBreaker, name)`` (typed) and ``get("circuit_breaker", name)`` are one object;
    a class that is no configurable kind is refused."""
    registry = Registry({})
    assert registry.get(CircuitBreaker, "x") is registry.get("circuit_breaker", "x")
    with pytest.raises(TypeError, match="policy class or a configuration key"):
        registry.get(dict, "x")


def test_client_options_that_take_functions_come_from_code() -> None:
    """A file cannot set ``policy_key`` (a function): the error names the key and says how to
    pass it; given in code, it reaches the transport's options, once."""
    with pytest.raises(ConfigError, match=r"^clients\.api\.policy_key: cannot come from config"):
        Registry({"clients": {"api": {"policy_key": "by_route"}}})
    registry = Registry({"clients": {"api": {"base_url": "http://127.0.0.1:9", "deadline": "2s"}}})

    def by_route(request: Any) -> object:
        return request.url.path

    options = registry.transport_options("api", policy_key=by_route)
    assert options.policy_key is by_route and options.deadline == 2.0
    with pytest.raises(TypeError, match="belong in the configuration"):
        registry.transport_options("api", deadline=3.0)
    client = registry.client("api", policy_key=by_route)
    assert registry.client("api") is client
    with pytest.raises(ValueError, match="built already"):
        registry.client("api", policy_key=lambda request: "other")
    client.close()


def test_references_reach_declared_policies_and_code_still_gets_or_creates() -> None:
    """A reference from the file needs ``policies.<name>.<kind>``, and an empty table is enough
    (it takes ``defaults.<kind>``); a name only code asks for is still built from the defaults;
    a bad reference set by a variable names the variable."""
    registry = Registry(
        {
            "defaults": {"circuit_breaker": {"minimum_calls": 3}},
            "policies": {"inventory": {"circuit_breaker": {}}},
            "pipelines": {"stock": {"policies": ["inventory.circuit_breaker"]}},
            "clients": {"inventory": {"base_url": "http://127.0.0.1:9", "breaker": "inventory"}},
        }
    )
    breaker = registry.get(CircuitBreaker, "inventory")
    assert registry.pipeline("stock").policies == (breaker,)
    assert registry.transport_options("inventory").breaker is breaker
    assert registry.get(CircuitBreaker, "anything").name == "anything"  # from code: get-or-create
    environ = {"APP_CLIENTS__C__BREAKER": "invetory"}
    with pytest.raises(ConfigError) as failed:
        Registry(
            {"policies": {"inventory": {"circuit_breaker": {}}}, "clients": {"c": {}}},
            env_prefix="APP_",
            environ=environ,
        )
    assert str(failed.value) == (
        "clients.c.breaker (from $APP_CLIENTS__C__BREAKER): no circuit_breaker 'invetory' in "
        "this configuration (did you mean 'inventory'?)"
    )


def test_good_httpx_options_reach_the_client() -> None:
    """The checked httpx options still arrive as httpx reads them (a duration as seconds, limits
    as ``httpx.Limits``)."""
    registry = Registry(
        {
            "clients": {
                "c": {
                    "base_url": "http://127.0.0.1:9/api",
                    "headers": {"x-team": "payments"},
                    "params": {"v": 2, "tags": ["a", "b"]},
                    "cookies": {"session": "s"},
                    "follow_redirects": True,
                    "max_redirects": 3,
                    "verify": False,
                    "trust_env": False,
                    "http2": True,
                    "timeout": "250ms",
                    "default_encoding": "latin-1",
                    "limits": {"max_connections": 10, "keepalive_expiry": "2s"},
                }
            }
        }
    )
    with registry.client("c") as client:
        assert str(client.base_url) == "http://127.0.0.1:9/api/"
        assert client.headers["x-team"] == "payments"
        assert client.params["tags"] == "a" and client.params.get_list("tags") == ["a", "b"]
        assert client.follow_redirects and client.max_redirects == 3
        assert client.timeout == httpx.Timeout(0.25)
        assert client.cookies["session"] == "s"
    bundle = Registry({"clients": {"c": {"verify": certifi.where()}}})  # a CA bundle's path
    bundle.client("c").close()


def test_without_a_toml_reader_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.10 without tomli, reading TOML says which extra brings it."""
    from resilience.config import _registry

    monkeypatch.setitem(sys.modules, "tomli", None)  # `import tomli` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'resilience-patterns\[toml\]'"):
        _registry.toml_reader((3, 10))
    if sys.version_info >= (3, 11):  # the stdlib reader exists only there
        assert _registry.toml_reader((3, 11)).__name__ == "tomllib"
