"""``python -m resilience.deadletter``: list, show, replay and drop, on a SQLite file and on
Redis, run as a real subprocess and in process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience.deadletter import DeadLetterQueue, Depth, RedisStreamStore, SQLiteStore
from resilience.deadletter._cli import main
from resilience.stores import MemoryStore
from resilience.testing import serve_asgi
from tests.redis_server import RedisServer
from tests.test_deadletter_replay import Ledger, park

pytestmark = pytest.mark.server  # the ledger on 127.0.0.1, and real subprocesses

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line in a fresh interpreter (bounded: 60 s)."""
    return subprocess.run(
        [sys.executable, "-m", "resilience.deadletter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def run(*args: str) -> tuple[int, str]:
    """Run the command line in process; its exit status and output."""
    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


@pytest.fixture
def ledger() -> Iterator[tuple[Ledger, str]]:
    service = Ledger()
    with serve_asgi(service.app(MemoryStore())) as url:
        yield service, url


@pytest.fixture
def db(tmp_path: Path, ledger: tuple[Ledger, str]) -> str:
    """A SQLite queue named "payments" holding three parked charges to the ledger."""
    path = tmp_path / "dead.sqlite3"
    queue = DeadLetterQueue(SQLiteStore(path, name="payments"))
    park(queue, ledger[1], range(3))
    queue.close()
    return str(path)


def test_list_shows_every_entry_and_the_depth(db: str) -> None:
    """list prints one row per entry (id, state, why, what) and the totals."""
    status, out = run("--db", db, "--name", "payments", "list")
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 5 and lines[-1] == "3 ready, 0 parked"
    assert all("exhausted" in line and "POST http://127.0.0.1:" in line for line in lines[1:4])


def test_list_as_json_lines(db: str) -> None:
    """--json prints one object per entry, keys included."""
    status, out = run("--db", db, "--name", "payments", "list", "--json", "--limit", "2")
    rows = [json.loads(line) for line in out.splitlines()]
    assert status == 0
    assert [row["key"] for row in rows] == ['"charge-0"', '"charge-1"']


def test_show_prints_the_request_without_credentials(db: str) -> None:
    """show prints the method, URL, key, headers and body; the caller's Authorization is not
    there to print."""
    status, out = run("--db", db, "--name", "payments", "show", "1")
    assert status == 0
    assert 'key:        "charge-0"' in out
    assert 'body:       {"order":0}' in out
    assert "Bearer original" not in out and "authorization" not in out.lower()


def test_unknown_entries_and_files_exit_with_1(db: str, tmp_path: Path) -> None:
    """show or drop of an unknown id, or a queue file that does not exist, exit with 1."""
    assert run("--db", db, "--name", "payments", "show", "99")[0] == 1
    assert run("--db", db, "--name", "payments", "drop", "nope")[0] == 1
    status, out = run("--db", str(tmp_path / "missing.sqlite3"), "list")
    assert status == 1 and "no dead-letter queue" in out
    assert not (tmp_path / "missing.sqlite3").exists()


def test_drop_forgets_an_entry(db: str) -> None:
    """drop removes the entry; list no longer shows it."""
    assert run("--db", db, "--name", "payments", "drop", "2") == (0, "dropped 2\n")
    assert run("--db", db, "--name", "payments", "list")[1].splitlines()[-1] == "2 ready, 0 parked"


def test_replay_in_a_subprocess_charges_each_entry_once(
    db: str, ledger: tuple[Ledger, str]
) -> None:
    """replay (a real process) sends every entry, with the credential taken from the
    environment, and prints the summary; the queue is empty after."""
    service, _ = ledger
    done = cli(
        "--db", db, "--name", "payments", "replay", "--header-env", "Authorization=PAY_TOKEN",
        env={"PAY_TOKEN": "Bearer from-env"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 succeeded" in done.stdout and "left: 0 ready, 0 parked" in done.stdout
    assert service.charges == Counter({"0": 1, "1": 1, "2": 1})
    assert {h["authorization"] for h in service.seen} == {"Bearer from-env"}


def test_replay_with_a_client_factory_and_a_limit(
    db: str, ledger: tuple[Ledger, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--client module:factory builds the client; --limit bounds the run."""
    service, _ = ledger
    (tmp_path / "replay_client.py").write_text(
        "import httpx\n"
        "def make():\n"
        "    return httpx.Client(headers={'Authorization': 'Bearer factory'})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    status, out = run(
        "--db", db, "--name", "payments", "replay", "--client", "replay_client:make",
        "--limit", "2", "--quiet",
    )  # fmt: skip
    assert status == 0 and "2 succeeded" in out and "stopped: limit" in out
    assert {h["authorization"] for h in service.seen} == {"Bearer factory"}
    assert sum(service.charges.values()) == 2


def test_the_cli_reads_a_redis_queue(redis_server: RedisServer, ledger: tuple[Ledger, str]) -> None:
    """--redis URL: list and replay a queue kept in a Redis stream."""
    service, url = ledger
    client = redis_server.client()
    queue = DeadLetterQueue(RedisStreamStore(client, name="fleet"))
    park(queue, url, range(2))
    status, out = run("--redis", redis_server.url, "--name", "fleet", "list")
    assert status == 0 and out.splitlines()[-1] == "2 ready, 0 parked"
    done = cli("--redis", redis_server.url, "--name", "fleet", "replay")
    assert done.returncode == 0, done.stderr
    assert "2 succeeded" in done.stdout
    assert queue.depth() == Depth(0, 0)
    assert sum(service.charges.values()) == 2
    client.close()  # type: ignore[attr-defined]


def test_bad_usage_is_refused() -> None:
    """A missing command or a limit below 1 is refused by the parser (exit status 2)."""
    assert cli("list", "--limit", "0").returncode == 2
    assert cli().returncode == 2
