"""The API reference: every public module imports, its docstrings send readers to public names
only, and every public name has its entry under docs/reference/."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import resilience

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"


def _walk() -> Iterator[pkgutil.ModuleInfo]:
    return pkgutil.walk_packages(resilience.__path__, "resilience.")


PUBLIC_MODULES = [
    "resilience",
    *sorted(
        info.name
        for info in _walk()
        if not any(part.startswith("_") for part in info.name.split("."))
    ),
]
# The names of private modules and packages, e.g. "_idempotency", "_circuit", "_shared".
PRIVATE_NAMES = sorted(
    {part for info in _walk() for part in info.name.split(".") if part.startswith("_")}
    - {"__main__"}
)
_PRIVATE_MENTION = re.compile(
    r"\bresilience(?:\.\w+)*\._[a-z]\w*"  # resilience._idempotency, resilience.stores._redis
    + r"|(?<![\w.])(?:"
    + "|".join(re.escape(name) for name in PRIVATE_NAMES)
    + r")\b(?!\()"  # a bare private module name (not a call of a private function)
)


def _public_names(module: ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name in vars(module) if not name.startswith("_")]
    return [name for name in names if not name.startswith("__")]


def _docstrings(module: ModuleType) -> Iterator[tuple[str, str]]:
    """(where, docstring) for the module and everything public it exports, members included."""
    yield module.__name__, module.__doc__ or ""
    for name in _public_names(module):
        obj = getattr(module, name)
        where = f"{module.__name__}.{name}"
        if inspect.isclass(obj):
            yield where, obj.__doc__ or ""
            for member_name, member in vars(obj).items():
                if member_name.startswith("_") and member_name != "__init__":
                    continue
                target = getattr(member, "fget", None) or getattr(member, "__func__", member)
                if callable(target) or isinstance(member, property):
                    yield f"{where}.{member_name}", inspect.getdoc(target) or ""
        elif inspect.isfunction(obj):
            yield where, obj.__doc__ or ""


def _reference_text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in sorted(REFERENCE.glob("*.md")))


def test_public_modules_are_found() -> None:
    """The walk finds the public modules users import (a broken walk would check nothing)."""
    expected = {"resilience.http", "resilience.asgi", "resilience.wsgi", "resilience.testing"}
    assert expected <= set(PUBLIC_MODULES)
    assert "_idempotency" in PRIVATE_NAMES


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_module_imports(name: str) -> None:
    """Each public module imports on its own (with the dev extras installed)."""
    assert importlib.import_module(name).__name__ == name


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_docstrings_name_no_private_module(name: str) -> None:
    """No docstring a reader sees in the reference sends them to a private module."""
    offenders = [
        f"{where}: {match.group(0)}"
        for where, doc in _docstrings(importlib.import_module(name))
        for match in _PRIVATE_MENTION.finditer(doc)
    ]
    assert offenders == []


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(name: str) -> None:
    """Every name a public module exports has a ``::: module.name`` entry under docs/reference/
    (mkdocs --strict then checks that each entry resolves)."""
    text = _reference_text()
    module = importlib.import_module(name)
    missing = [
        f"::: {name}.{public}"
        for public in _public_names(module)
        if not re.search(rf"^::: {re.escape(name)}\.{re.escape(public)}\s*$", text, re.MULTILINE)
    ]
    assert missing == [], f"add these entries to a page of docs/reference/: {missing}"


def test_reference_entries_name_public_modules_only() -> None:
    """The reference documents public names only: no entry reaches into a private module."""
    entries = re.findall(r"^::: ([\w.]+)", _reference_text(), re.MULTILINE)
    assert entries and not [entry for entry in entries if "._" in entry]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_docstring_examples_run(name: str) -> None:
    """The ``>>>`` examples in public docstrings (shown in the reference) run and print what they
    say."""
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for public in [None, *_public_names(module)]:
        obj = module if public is None else getattr(module, public)
        if public is not None and not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        for test in finder.find(obj, public or name, module=False, globs=dict(vars(module))):
            runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) failed (see above)"
