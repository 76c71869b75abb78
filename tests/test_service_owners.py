"""Several service processes on one state database (issue 16): a job belongs to the process
that runs it, which beats while it runs; a starting process fails only the jobs whose owner is
gone (its process ended, or its heartbeat is stale), never another live process's; a cancel
asked through another process reaches the owner. The two-process test runs on a SQLite state
file and on a PostgreSQL state database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from sqlsnap.service import owners  # noqa: E402
from sqlsnap.service.jobs import RESTART_ERROR  # noqa: E402

from ._service import STATE_URL_ENV, build_demo, free_port, make_env  # noqa: E402
from .conftest import pg_database  # noqa: E402
from .test_service_api import big_sqlite  # noqa: E402

HOST = owners.new_instance().split(":")[0]


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo") / "demo.db")


def ended_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


def test_an_owner_is_gone_when_its_process_ended_or_its_heartbeat_is_stale() -> None:
    me = owners.new_instance()
    at = time.time()
    fresh, stale = at - 1, at - owners.STALE_SECONDS - 1
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not owners.gone(me, stale, at, me)  # never one's own jobs
        assert not owners.gone(f"{HOST}:{sleeper.pid}:abcd", fresh, at, me)  # alive
        assert owners.gone(f"{HOST}:{ended_pid()}:abcd", fresh, at, me)  # its process ended
        assert owners.gone(f"{HOST}:{os.getpid()}:other", fresh, at, me)  # this pid's predecessor
        assert not owners.gone("elsewhere:1:abcd", fresh, at, me)  # another host: its heartbeat says
        assert owners.gone("elsewhere:1:abcd", stale, at, me)
        assert owners.gone(None, fresh, at, me)  # a row from before owners
    finally:
        sleeper.kill()
        sleeper.wait(10)


@pytest.mark.parametrize(("age", "failed"), [(1.0, False), (owners.STALE_SECONDS + 5, True)])
def test_a_start_fails_another_host_s_job_only_when_its_heartbeat_is_stale(
        tmp_path: Path, demo_db: Path, age: float, failed: bool) -> None:
    env = make_env(tmp_path, demo_db)
    env.state.execute("INSERT INTO jobs (actor, source, destination, target, options, status, created, "
                      "started) VALUES ('ana@example.com', 'demo', 'local', '', '{}', 'running', 1, 1)")
    env.state.ensure_column("jobs", "owner", "TEXT")
    env.state.ensure_column("jobs", "heartbeat", "REAL")
    env.state.execute("UPDATE jobs SET owner = 'elsewhere:7:abcd', heartbeat = ?", [time.time() - age])
    with TestClient(env.app(), base_url="http://127.0.0.1") as client:
        job = client.get("/api/exports/1", headers={"Authorization": f"Bearer {env.tokens['admin']}"}).json()
    assert (job["status"], job["error"]) == (("failed", RESTART_ERROR) if failed else ("running", None))


def _serve(config: Path, port: int, state_url: str | None) -> subprocess.Popen[bytes]:
    sqlsnap = str(Path(sys.executable).with_name("sqlsnap"))
    env = {**os.environ, STATE_URL_ENV: state_url} if state_url else None
    return subprocess.Popen([sqlsnap, "serve", "-c", str(config), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 5 million rows, gzip: an export of 9-10 s here, to be cancelled while it runs. With 1.5
    # million (about 3 s) it ended first in one CI run of three: a second service process has
    # to start (1-2 s) and see the job's progress before the test cancels it.
    return big_sqlite(tmp_path_factory.mktemp("big") / "big.db", rows=5_000_000)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: the state in a SQLite file; else the URL of a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield None
        return
    with pg_database() as url:
        yield url


def test_two_processes_on_one_state_database_leave_each_other_s_jobs_alone(
        tmp_path: Path, demo_db: Path, big_db: Path, state_url: str | None) -> None:
    import httpx

    (tmp_path / "svc").mkdir()
    env = make_env(tmp_path / "svc", demo_db, {"big": f"sqlite:///{big_db}"}, state_url=state_url)
    env.state.close()
    admin = {"Authorization": f"Bearer {env.tokens['admin']}"}

    def up(port: int) -> subprocess.Popen[bytes]:
        proc = _serve(env.config_path, port, state_url)

        def answers() -> bool:
            assert proc.poll() is None, "the service ended"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/login").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, 30, f"the service on port {port}")
        return proc

    a_port, b_port = free_port(), free_port()
    a = up(a_port)
    b: subprocess.Popen[bytes] | None = None
    try:
        body = {"source": "big", "destination": "local", "compress": "gzip"}
        job_id = httpx.post(f"http://127.0.0.1:{a_port}/api/exports", headers=admin, json=body).json()["id"]

        def get(port: int) -> dict[str, Any]:
            url = f"http://127.0.0.1:{port}/api/exports/{job_id}"
            job: dict[str, Any] = httpx.get(url, headers=admin).json()
            return job

        wait_until(lambda: get(a_port)["progress"].get("rows"), 30, "rows exported")
        # A second process starts on the same state database: A's running job stays running,
        # and B shows its progress as A's heartbeat writes it.
        b = up(b_port)
        assert get(b_port)["status"] == "running"
        seen = wait_until(lambda: get(b_port)["progress"].get("rows"), 10, "progress seen from B")
        assert get(a_port)["status"] == "running"
        # A cancel asked through B reaches A, which stops its export and leaves no file.
        cancel = httpx.post(f"http://127.0.0.1:{b_port}/api/exports/{job_id}/cancel", headers=admin)
        assert cancel.status_code == 200
        job = wait_until(lambda: (j := get(b_port))["status"] not in ("queued", "running") and j, 30,
                         "cancelled")
        assert job["status"] == "cancelled" and job["progress"]["rows"] >= seen
        assert list(env.out.iterdir()) == []
        # A second export on A, then A is killed: B, still running, finds A gone at its next beat.
        job_id = httpx.post(f"http://127.0.0.1:{a_port}/api/exports", headers=admin, json=body).json()["id"]
        wait_until(lambda: get(b_port)["progress"].get("rows"), 30, "rows exported")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        job = wait_until(lambda: (j := get(b_port))["status"] == "failed" and j,
                         3 * owners.HEARTBEAT_SECONDS + 5, "failed by B")
        assert job["error"] == RESTART_ERROR
        wait_until(lambda: list(env.out.iterdir()) == [], 20, "the temporary file removed")
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(30)
