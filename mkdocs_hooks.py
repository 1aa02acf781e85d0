"""MkDocs hook: the files that benchmarks/README.md links to (plots, result files) are served
beside the Benchmarks page, which includes that README, so its relative links resolve there as
they do on the repository (e.g. ``results/run.json``; today it links none)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

_README = Path(__file__).resolve().parent / "benchmarks" / "README.md"
_LINK = re.compile(r"\]\(([^)\s#]+)\)")


def on_files(files: Files, config: Any) -> Files:
    """Add each relative link target of the benchmarks README that is a file, at the path the
    README names it by (the Benchmarks page sits at the root of the site's sources)."""
    for target in sorted(set(_LINK.findall(_README.read_text(encoding="utf-8")))):
        source = (_README.parent / target).resolve()
        if "://" in target or not source.is_file() or files.get_file_from_path(target):
            continue
        files.append(File.generated(config, target, abs_src_path=str(source)))
    return files
