"""Run the README's ```python blocks against the installed wheel (run with ``python -I`` from a
directory outside the checkout; see release_check.py).

    python -I readme_examples.py README.md REDIS_URL

A block that talks to ``redis://127.0.0.1:6379`` talks to ``REDIS_URL`` instead.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import sysconfig
from pathlib import Path

README_REDIS_URL = "redis://127.0.0.1:6379"


def main(readme: Path, redis_url: str) -> int:
    import resilience

    installed = Path(resilience.__file__).resolve()
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    if site not in installed.parents:
        raise SystemExit(f"resilience was imported from {installed}, not from the wheel in {site}")
    version = importlib.metadata.version("resilience-patterns")
    if version != resilience.__version__:
        raise SystemExit(f"metadata: {version}; resilience.__version__: {resilience.__version__}")
    package = installed.parent
    for needed in ("py.typed", "stores/gcra.lua", "stores/breaker.lua"):
        if not (package / needed).is_file():
            raise SystemExit(f"the installed package lacks {needed}")
    text = readme.read_text("utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    if not blocks:
        raise SystemExit("no python examples found in the README")
    for index, block in enumerate(blocks):
        block = block.replace(README_REDIS_URL, redis_url.rsplit("/", 1)[0])
        exec(compile(block, f"README.md[python block {index}]", "exec"), {"__name__": "readme"})
    print(f"  {len(blocks)} README examples ran against resilience-patterns {version} in {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))
