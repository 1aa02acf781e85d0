"""The install name: every ``pip install`` we print names our distribution and extras that exist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

# `pip install 'name[extra,extra]'`, quoted or not
_INSTALL = re.compile(r"pip install\s+'?([A-Za-z0-9_.-]+)(?:\[([a-z0-9_,-]+)\])?")


def _texts() -> list[tuple[str, str]]:
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    paths += sorted((ROOT / "resilience").rglob("*.py"))
    return [(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")) for path in paths]


def _commands() -> list[tuple[str, str, str | None]]:
    return [
        (where, match.group(1), match.group(2))
        for where, text in _texts()
        for match in _INSTALL.finditer(text)
    ]


def test_the_distribution_is_not_named_like_the_taken_index_name() -> None:
    """The distribution is ``resilience-patterns``: ``resilience`` on the index is not ours."""
    assert PROJECT["name"] == "resilience-patterns"


def test_install_commands_were_found() -> None:
    """The README and the instrumentation error both print an install command (checked below)."""
    places = {where for where, _, _ in _commands()}
    assert "README.md" in places
    assert "resilience/instrumentation/__init__.py" in places


@pytest.mark.parametrize(("where", "name", "extras"), _commands())
def test_every_install_command_names_our_distribution_and_real_extras(
    where: str, name: str, extras: str | None
) -> None:
    """Each ``pip install`` of ours names the distribution and only extras pyproject defines."""
    if name not in ("resilience", PROJECT["name"]):
        return  # another package (an exporter, a peer): not ours to name
    assert name == PROJECT["name"], f"{where}: pip install {name}"
    for extra in (extras or "").split(","):
        if extra:
            assert extra in PROJECT["optional-dependencies"], f"{where}: unknown extra {extra}"


def test_the_otlp_extra_brings_the_sdk_and_an_exporter() -> None:
    """``[otel]`` is the API only; ``[otlp]`` adds what an application starting afresh needs."""
    extras = PROJECT["optional-dependencies"]
    assert [re.split(r"[<>=\[]", dep)[0] for dep in extras["otel"]] == ["opentelemetry-api"]
    otlp = {re.split(r"[<>=\[]", dep)[0] for dep in extras["otlp"]}
    assert {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"} <= otlp


def test_the_version_is_written_once() -> None:
    """pyproject takes the version from ``resilience.__version__`` (no second copy to drift)."""
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'path = "resilience/__init__.py"' in text


def test_ci_builds_the_docs_and_checks_the_release() -> None:
    """CI runs the strict docs build and the wheel check, and still runs the test suite."""
    commands = (ROOT / ".ci" / "run").read_text(encoding="utf-8").split()
    assert "docs" in commands and "release-check" in commands and "test" in commands
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "mkdocs build --strict" in makefile
    assert ".ci/release_check.py" in makefile
