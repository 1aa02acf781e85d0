"""The house map, executable: every import in ``resilience/`` obeys docs/architecture.md's layers.

The layer table is read from the page itself (the fenced block under "What may import what"),
so the page and the code cannot drift apart: an import pointing to a higher layer, a module the
page does not place, a lazy exception the code no longer needs, or an import cycle fails here
with the file and line to look at.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "resilience"
MAP = ROOT / "docs" / "architecture.md"

# Imports the page calls debt, each owned by another change; the test fails when one of them
# no longer occurs, so that whoever removes it removes its line here too.
KNOWN_DEBTS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it stands and how it runs."""

    source: str  # the importing module, relative to the package ("" is the package itself)
    target: str  # a module of ours (relative), or an outside top-level name ("redis")
    ours: bool
    path: Path
    line: int
    lazy: bool  # inside a function (it runs when called, not when imported)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Map:
    """The page's block: each pattern's layer, the packages kept apart, the lazy exceptions."""

    layers: dict[str, tuple[int, str]]  # pattern -> (number, name)
    apart: tuple[str, ...]
    lazy: dict[str, tuple[str, ...]]  # target -> the patterns of the modules allowed it

    def place(self, module: str) -> tuple[int, str] | None:
        """The layer of ``module``: an exact entry, else the longest ``pkg.*`` containing it."""
        return _most_specific(self.layers, module)

    def lazily_allowed(self, source: str, target: str) -> bool:
        return any(_matches(pattern, source) for pattern in self.lazy.get(target, ()))


def _matches(pattern: str, module: str) -> bool:
    if pattern.endswith(".*"):
        package = pattern[:-2]
        return module == package or module.startswith(package + ".")
    return module == pattern


def _most_specific(patterns: dict[str, tuple[int, str]], module: str) -> tuple[int, str] | None:
    if module in patterns:
        return patterns[module]
    packages = [p for p in patterns if p.endswith(".*") and _matches(p, module)]
    return patterns[max(packages, key=len)] if packages else None


def read_map(text: str) -> Map:
    """Parse the block under the page's "What may import what" heading."""
    section = text.split("## What may import what", 1)[1]
    block = section.split("```\n", 2)[1]
    layers: dict[str, tuple[int, str]] = {}
    apart: tuple[str, ...] = ()
    lazy: dict[str, tuple[str, ...]] = {}
    current: tuple[int, str] | None = None
    for raw in block.splitlines():
        words = raw.split()
        if not words:
            continue
        if raw[0].isspace():  # continues the layer above
            assert current is not None, f"a continuation line before any layer: {raw!r}"
            modules = words
        elif words[0].isdigit():
            current = (int(words[0]), words[1])
            modules = words[2:]
        elif words[0] == "apart":
            apart, current = tuple(words[1:]), None
            continue
        elif words[0] == "lazy":
            arrow = words.index("->")
            for target in words[arrow + 1 :]:
                lazy[target] = (*lazy.get(target, ()), *words[1:arrow])
            current = None
            continue
        else:
            raise AssertionError(f"an unknown line in the layer table: {raw!r}")
        for module in modules:
            name = "" if module == "__init__" else module
            assert name not in layers, f"{module} is placed twice in the layer table"
            layers[name] = current
    return Map(layers, apart, lazy)


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name relative to it ("" is the package)."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports_of(name: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    constants: dict[str, str] = {}  # module-level NAME = "string", for import_module(NAME)
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            constants[target.id] = str(value.value)

    def ours(dotted: str) -> str | None:
        """The module of ours that importing ``dotted`` (absolute) names, if any."""
        if dotted != "resilience" and not dotted.startswith("resilience."):
            return None
        relative = dotted.removeprefix("resilience").removeprefix(".")
        while relative and relative not in known:
            relative = relative.rpartition(".")[0]
        return relative

    def visit(node: ast.AST, lazy: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the importing module's package upwards
                    parts = ["resilience", *package.split(".")] if package else ["resilience"]
                    parts = parts[: len(parts) - child.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                # ``from pkg import sub`` imports the submodule when there is one.
                targets = [f"{base}.{alias.name}" for alias in child.names] or [base]
            elif (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr == "import_module"
                and child.args
            ):
                argument = child.args[0]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    targets = [argument.value]
                elif isinstance(argument, ast.Name) and argument.id in constants:
                    targets = [constants[argument.id]]
            for dotted in targets:
                mine = ours(dotted)
                if mine is not None:
                    yield Import(name, mine, True, path, child.lineno, lazy)
                else:
                    yield Import(name, dotted.split(".")[0], False, path, child.lineno, lazy)
            yield from visit(child, inner)

    yield from visit(tree, False)


@functools.cache
def all_imports() -> list[Import]:
    """Every import in the package (read once per run: three tests use them)."""
    known = modules()
    return [found for name, path in known.items() for found in _imports_of(name, path, known)]


def _label(module: str) -> str:
    return "resilience" if not module else f"resilience.{module}"


def violations(
    house: Map,
    imports: list[Import],
    known: dict[str, Path],
    debts: dict[tuple[str, str], str] = KNOWN_DEBTS,
) -> list[str]:
    """Every way the imports disagree with the map (and ``debts``), as "file:line: what"."""
    problems: list[str] = []
    for name, path in known.items():
        if house.place(name) is None and any(i.source == name and i.ours for i in imports):
            problems.append(
                f"{path.relative_to(ROOT)}: {_label(name)} is not on the map: place it in "
                f"the layer table of docs/architecture.md"
            )
    for found in imports:
        if found.source == found.target:
            continue
        if not found.ours:
            if found.target not in house.lazy:
                continue  # an outside dependency the map does not police
            if not house.lazily_allowed(found.source, found.target):
                problems.append(
                    f"{found.where}: {_label(found.source)} imports {found.target}, which only "
                    f"{', '.join(house.lazy[found.target])} may import (lazily)"
                )
            elif not found.lazy:
                problems.append(
                    f"{found.where}: {_label(found.source)} imports {found.target} at module "
                    "level; the map allows it only inside a function"
                )
            continue
        source, target = house.place(found.source), house.place(found.target)
        if source is None or target is None:
            continue  # reported above (or an import-free package that nothing places)
        if (found.source, found.target) in debts:
            continue
        for package in house.apart:
            for other in house.apart:
                if (
                    package != other
                    and _matches(f"{package}.*", found.source)
                    and _matches(f"{other}.*", found.target)
                ):
                    problems.append(
                        f"{found.where}: {_label(found.source)} imports {_label(found.target)}: "
                        f"{', '.join(house.apart)} never import each other"
                    )
        if target[0] <= source[0]:
            continue
        if not house.lazily_allowed(found.source, found.target):
            problems.append(
                f"{found.where}: {_label(found.source)} (layer {source[0]} {source[1]}) imports "
                f"{_label(found.target)} (layer {target[0]} {target[1]}): an import points to "
                "its own layer or lower"
            )
        elif not found.lazy:
            problems.append(
                f"{found.where}: {_label(found.source)} imports {_label(found.target)} at "
                "module level; the map allows it only inside a function"
            )
    pairs = {(found.source, found.target) for found in imports}
    for target, patterns in house.lazy.items():
        for pattern in patterns:
            if not any(_matches(pattern, name) for name in known):
                continue  # a room an open issue adds: placed before it lands
            if not any(_matches(pattern, s) and t == target for s, t in pairs):
                problems.append(
                    f"docs/architecture.md: lazy {pattern} -> {target} is listed but no such "
                    "import exists: remove the exception"
                )
    for source, target in debts:
        if (source, target) not in pairs:
            problems.append(
                f"tests/test_layers.py: the debt {_label(source)} -> {_label(target)} is gone: "
                "remove it from KNOWN_DEBTS (and from the page)"
            )
    return problems


def cycles(imports: list[Import]) -> list[list[Import]]:
    """One import cycle per strongly connected group of our modules, as the imports that
    close it (shortest around the group's first module); Tarjan's algorithm finds the groups."""
    edges: dict[str, dict[str, Import]] = {}
    for found in imports:
        if found.ours and found.source != found.target:
            edges.setdefault(found.source, {}).setdefault(found.target, found)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges.get(node, {})):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return [_shortest_cycle(group, edges) for group in groups]


def _shortest_cycle(group: set[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    start = min(group)
    came: dict[str, Import] = {}
    frontier = [start]
    while frontier:  # breadth first, inside the group, until an edge returns to the start
        following = []
        for node in frontier:
            for target, edge in sorted(edges.get(node, {}).items()):
                if target not in group:
                    continue
                if target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came[path[0].source])
                    return path
                if target not in came:
                    came[target] = edge
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in a strongly connected group")


def runtime_graph(house: Map, imports: list[Import]) -> list[Import]:
    """The imports a cycle may not run through: the listed lazy exceptions and debts left out
    (a lazy exception runs after every module is loaded: that is why it is allowed)."""
    return [
        found
        for found in imports
        if (found.source, found.target) not in KNOWN_DEBTS
        and not (found.lazy and house.lazily_allowed(found.source, found.target))
    ]


# -- the tests --------------------------------------------------------------------------------


def test_the_map_is_read_from_the_page() -> None:
    """The page's block places the rooms it names (so the checks below check something)."""
    house = read_map(MAP.read_text())
    assert house.place("_errors") == (0, "leaves")
    assert house.place("_circuit.state") == (2, "algorithms")
    assert house.place("_circuit.breaker") == (4, "policies")
    assert house.place("stores._redis") == (3, "stores")
    assert house.place("") == (4, "policies")
    assert house.place("http._transport") == (5, "adapters")
    assert house.place("testing._clock") == (6, "observers")
    assert house.apart == ("http", "asgi", "wsgi")
    assert house.lazily_allowed("_events", "instrumentation._otel")


def test_every_import_points_to_its_own_layer_or_lower() -> None:
    """No import in resilience/ points above its layer, crosses between packages kept apart,
    or imports lazily what the map does not list; each violation names its file and line."""
    problems = violations(read_map(MAP.read_text()), all_imports(), modules())
    assert not problems, "\n" + "\n".join(problems)


def test_the_package_has_no_import_cycle() -> None:
    """No module of resilience/ reaches itself through imports (lazy and type-only ones
    included), except through a lazy exception or a debt the map lists."""
    found = cycles(runtime_graph(read_map(MAP.read_text()), all_imports()))
    described = [
        " ; ".join(f"{e.where}: {_label(e.source)} -> {_label(e.target)}" for e in cycle)
        for cycle in found
    ]
    assert not described, "\n" + "\n".join(described)


# -- the checker itself, on planted imports ---------------------------------------------------

_PLANTED_MAP = """
## What may import what
```
0 leaves       low
2 algorithms   core
4 policies     high pkg.*
5 adapters     web.* cli.*
apart          web cli
lazy           low -> high
```
"""


def _planted(source: str, target: str, *, lazy: bool = False, ours: bool = True) -> Import:
    return Import(source, target, ours, PACKAGE / "planted.py", 7, lazy)


def _check(*imports: Import, known: tuple[str, ...] = ("low", "core", "high")) -> list[str]:
    house = read_map(_PLANTED_MAP)
    paths = {name: PACKAGE / f"{name}.py" for name in known}
    # The planted map's lazy exception is used, so that it is not reported as stale.
    used = _planted("low", "high", lazy=True)
    return violations(house, [used, *imports], paths, debts={})


def test_an_upward_import_is_reported_with_file_and_line() -> None:
    """An algorithm importing a policy fails, naming the file, the line and both layers."""
    assert _check(_planted("core", "high")) == [
        "resilience/planted.py:7: resilience.core (layer 2 algorithms) imports resilience.high "
        "(layer 4 policies): an import points to its own layer or lower"
    ]


@pytest.mark.parametrize("lazy", [False, True])
def test_a_lazy_import_does_not_excuse_an_upward_one(lazy: bool) -> None:
    """Inside a function or not, an upward import the map does not list fails."""
    assert len(_check(_planted("core", "high", lazy=lazy))) == 1


def test_a_listed_lazy_exception_must_stay_lazy() -> None:
    """The listed exception passes inside a function and fails at module level."""
    assert _check(_planted("low", "high", lazy=True)) == []
    assert "only inside a function" in _check(_planted("low", "high"))[0]


def test_packages_kept_apart_never_import_each_other() -> None:
    """An adapter importing its sibling adapter fails though both are layer 5."""
    problems = _check(_planted("web.server", "cli"), known=("low", "high", "web.server", "cli"))
    assert problems == [
        "resilience/planted.py:7: resilience.web.server imports resilience.cli: web, cli never "
        "import each other"
    ]


def test_an_unplaced_module_and_an_unused_exception_are_reported() -> None:
    """A module the map does not place fails, and so does a lazy exception nothing uses."""
    house = read_map(_PLANTED_MAP)
    paths = {name: PACKAGE / f"{name}.py" for name in ("low", "high", "extra")}
    problems = violations(house, [_planted("extra", "low")], paths, debts={})
    assert problems == [
        "resilience/extra.py: resilience.extra is not on the map: place it in the layer table "
        "of docs/architecture.md",
        "docs/architecture.md: lazy low -> high is listed but no such import exists: remove "
        "the exception",
    ]


def test_an_optional_dependency_is_imported_only_where_listed() -> None:
    """``redis`` imported outside the stores, or at module level, fails."""
    house = read_map(_PLANTED_MAP.replace("lazy           low -> high", "lazy  pkg.* -> redis"))
    paths = {name: PACKAGE / f"{name}.py" for name in ("low", "high", "pkg.store")}
    fine = _planted("pkg.store", "redis", lazy=True, ours=False)
    assert violations(house, [fine], paths, debts={}) == []
    outside = violations(house, [fine, _planted("high", "redis", lazy=True, ours=False)], paths)
    assert "which only pkg.* may import" in outside[0]
    eager = violations(house, [_planted("pkg.store", "redis", ours=False)], paths, debts={})
    assert "only inside a function" in eager[0]


def test_a_cycle_is_found_with_the_imports_that_close_it() -> None:
    """Three modules importing in a ring form one cycle of three imports; a chain forms none."""
    ring = [_planted("a", "b"), _planted("b", "c"), _planted("c", "a", lazy=True)]
    (cycle,) = cycles([*ring, _planted("c", "d")])
    assert {(edge.source, edge.target) for edge in cycle} == {("a", "b"), ("b", "c"), ("c", "a")}
    assert cycles([_planted("a", "b"), _planted("b", "c")]) == []


def test_imports_are_read_at_every_level() -> None:
    """Module-level, function-level, TYPE_CHECKING and importlib imports are all seen."""
    found = {(i.source, i.target, i.lazy) for i in all_imports()}
    assert ("_events", "instrumentation._otel", True) in found  # importlib, by constant name
    assert ("_retry.retry", "_retry.core", False) in found
    assert any(t == "redis" and lazy for s, t, lazy in found if s.startswith("stores"))


def test_relative_imports_resolve_like_absolute_ones(tmp_path: Path) -> None:
    """``from . import x`` and ``from ..a import b`` name the modules Python would import."""
    package = PACKAGE / "pkg"
    known = {"pkg": package / "__init__.py", "pkg.a": package / "a.py", "pkg.b": package / "b.py"}
    source = tmp_path / "b.py"
    source.write_text("from . import a\nfrom .a import thing\nfrom .. import _errors\n")
    known["_errors"] = PACKAGE / "_errors.py"
    targets = [i.target for i in _imports_of("pkg.b", source, known)]
    assert targets == ["pkg.a", "pkg.a", "_errors"]
