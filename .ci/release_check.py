"""Release hygiene: build the sdist and the wheel, check them, install the wheel into a bare
virtualenv and run the README's examples against it, away from the checkout.

    .venv/bin/python .ci/release_check.py      (or: make release-check)

What it catches: a module, ``py.typed``, a Lua script or the LICENSE left out of the wheel (or
of the sdist: the wheel is built from the sdist), metadata PyPI would refuse (``twine check
--strict``), a version written in two places, an extra that does not resolve, and README
examples that only work from a checkout. Needs ``build`` and ``twine`` (the dev extra) and
the package index.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "readme_examples.py"


def _run(*command: object, cwd: Path | None = None) -> None:
    started = time.monotonic()
    printable = " ".join(str(part) for part in command)
    print(f"$ {printable}", flush=True)
    subprocess.run([str(part) for part in command], cwd=cwd, check=True)
    print(f"  ({time.monotonic() - started:.1f} s)", flush=True)


def _tracked_package_files() -> set[str]:
    """The files of ``resilience/`` in the checkout that a wheel must carry (as git sees them:
    no caches, nothing untracked)."""
    listed = subprocess.run(
        ["git", "ls-files", "resilience"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name for name in listed if not name.endswith(".pyc")}


def _check_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("resilience/")}
    missing = sorted(_tracked_package_files() - shipped)
    if missing:
        raise SystemExit(f"the wheel lacks files of the package: {missing}")
    for needed in ("resilience/py.typed", "resilience/stores/gcra.lua"):
        if needed not in shipped:
            raise SystemExit(f"the wheel lacks {needed}")
    print(f"  the wheel carries all {len(shipped)} files of resilience/", flush=True)


def _check_license(sdist: Path, wheel: Path) -> None:
    """The MIT licence asks that its text go with every copy: both archives carry LICENSE."""
    with tarfile.open(sdist) as archive:
        in_sdist = [name for name in archive.getnames() if name.endswith("/LICENSE")]
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = [
            name for name in archive.namelist() if name.endswith(".dist-info/licenses/LICENSE")
        ]
    if not in_sdist or not in_wheel:
        raise SystemExit(f"LICENSE missing: sdist {in_sdist}, wheel {in_wheel}")
    print(f"  LICENSE is in the sdist ({in_sdist[0]}) and the wheel ({in_wheel[0]})", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="resilience-release-") as scratch:
        tmp = Path(scratch)
        dist = tmp / "dist"
        # sdist first, then the wheel built from the unpacked sdist: both are checked at once
        _run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
        (wheel,) = dist.glob("*.whl")
        (sdist,) = dist.glob("*.tar.gz")
        _run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)
        _check_wheel_contents(wheel)
        _check_license(sdist, wheel)

        venv = tmp / "venv"
        _run(sys.executable, "-m", "venv", venv)
        python = venv / "bin" / "python"
        # [otlp]: the README's tracing example needs the SDK; [redis]: its fleet example needs
        # redis-py; both extras must resolve too
        _run(python, "-m", "pip", "install", "--quiet", f"{wheel}[otlp,redis]")
        work = tmp / "work"  # not the checkout: `import resilience` must find the wheel
        work.mkdir()
        shutil.copy(RUNNER, work / RUNNER.name)
        # the README's Redis example talks to a redis-server of ours on a free port, never to a
        # Redis this machine may run on 6379 (the tests' own server class; `make redis-server`)
        sys.path.insert(0, str(ROOT))
        from tests.redis_server import RedisServer

        redis_server = RedisServer()
        try:
            _run(python, "-I", work / RUNNER.name, ROOT / "README.md", redis_server.url, cwd=work)
        finally:
            redis_server.stop()
            shutil.rmtree(redis_server._dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
