"""Every ```python block of the documentation site runs, page by page, as a reader would run it.

The blocks of one page share a namespace, in order (a later block may use what an earlier one
built); a ```toml block whose first line is ``# <file name>`` is written to that file first,
in the page's own working directory. A page marked ``<!-- docs-test: subprocess -->`` runs in
its own interpreter (it sets process-wide state such as OpenTelemetry's global providers). A
page that talks to ``redis://127.0.0.1:6379`` gets the test's own redis-server instead (never
the machine's).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REDIS_URL = "redis://127.0.0.1:6379"
_BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
_FILE = re.compile(r"^```toml\n# ([\w.-]+)\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)


def page_blocks(page: Path) -> list[str]:
    """The ```python blocks of ``page``, in order."""
    return _BLOCK.findall(page.read_text(encoding="utf-8"))


PAGES = sorted(page for page in DOCS.rglob("*.md") if page_blocks(page))


def _source(text: str, redis_url: str | None) -> str:
    """The page's blocks as one program, each block on its own lines of the page (so a
    traceback points at the markdown line), everything else blank."""
    lines = [""] * (text.count("\n") + 1)
    for match in _BLOCK.finditer(text):
        first = text.count("\n", 0, match.start(1))
        for offset, line in enumerate(match.group(1).splitlines()):
            lines[first + offset] = line
    source = "\n".join(lines)
    if redis_url is not None:
        source = source.replace(REDIS_URL, redis_url.rsplit("/", 1)[0])
    return source


def test_the_site_has_runnable_examples() -> None:
    """The pages that teach by example are found and checked (a broken pattern finds none)."""
    names = {page.name for page in PAGES}
    assert {"getting-started.md", "concepts.md", "testing.md", "migrating.md"} <= names


@pytest.mark.examples
@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(DOCS)) for page in PAGES])
def test_page_examples_run(
    page: Path, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's python blocks run in order without raising (their asserts hold)."""
    text = page.read_text(encoding="utf-8")
    redis_url = None
    if REDIS_URL in text:
        redis_url = request.getfixturevalue("redis_server").url
    source = _source(text, redis_url)
    monkeypatch.chdir(tmp_path)  # a page may write files (a settings file, a plot)
    for match in _FILE.finditer(text):
        (tmp_path / match.group(1)).write_text(match.group(2), encoding="utf-8")
    if "<!-- docs-test: subprocess -->" in text:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["PYTHONPATH"] = str(ROOT)
        done = subprocess.run(
            [sys.executable, "-c", source],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return
    namespace = {"__name__": f"docs.{page.stem}"}
    exec(compile(source, str(page.relative_to(ROOT)), "exec"), namespace)


def _nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav lists (``- Title: page.md`` or ``- page.md``)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:") :]
    return re.findall(r"^\s+- (?:[^:\n]+: )?([\w/.-]+\.md)\s*$", nav, flags=re.MULTILINE)


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    """A page added under docs/ must be placed in mkdocs.yml's nav (the strict build refuses an
    orphan), and every nav entry names a page that exists: checked here, in ``make test``."""
    listed = _nav_pages()
    pages = sorted(str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md"))
    assert sorted(set(listed)) == pages
    assert len(listed) == len(set(listed))


_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize(
    "page",
    [*sorted(DOCS.rglob("*.md")), ROOT / "benchmarks" / "README.md"],
    ids=lambda page: str(page.relative_to(ROOT)),
)
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link of a page (and of the benchmarks README, which the Benchmarks page
    includes) names a file that exists: what the strict docs build checks, in ``make test``."""
    broken = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if not path or "://" in path or path.startswith("mailto:"):
            continue
        if not (page.parent / path).exists():
            broken.append(target)
    assert broken == []
