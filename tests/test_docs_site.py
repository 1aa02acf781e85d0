"""The documentation site builds with ``mkdocs build --strict``, as CI builds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Building the site takes seconds: it belongs with the examples, outside `make check`.
pytestmark = pytest.mark.examples

ROOT = Path(__file__).resolve().parent.parent


def test_the_site_builds_strict(tmp_path: Path) -> None:
    """A broken link or anchor, a page missing from the nav, or an API entry that does not
    resolve fails the build (strict), and so this test."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "reference" / "config" / "index.html").is_file()
