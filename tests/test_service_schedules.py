"""Schedules, retention and notifications in the service (issue 17): a schedule due every two
seconds runs, records its runs and prunes beyond keep_last (local folder and the S3 loopback
server); two service processes sharing one state database run each due time once; a due time
missed while the service was down runs once at start or is recorded, as configured; a webhook
on loopback gets the failure notice of a scheduled export whose source is down."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("croniter")

from fastapi.testclient import TestClient  # noqa: E402

from sqlsnap.service import audit  # noqa: E402
from sqlsnap.service.config import ConfigError, load_config  # noqa: E402

from ._service import ServiceEnv, build_demo, free_port, make_env, wait_for  # noqa: E402

EVERY_2S = "* * * * * */2"  # croniter: a sixth field is seconds


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo") / "demo.db")


def bearer(env: ServiceEnv) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.tokens['admin']}"}


def scheduled_jobs(client: TestClient, env: ServiceEnv, actor: str) -> list[dict[str, Any]]:
    jobs = client.get("/api/exports?limit=1000", headers=bearer(env)).json()["exports"]
    return [j for j in jobs if j["actor"] == actor]


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(0.2)


@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_schedule_runs_records_its_runs_and_keeps_the_last_two(
        tmp_path: Path, demo_db: Path, monkeypatch: pytest.MonkeyPatch, store: str) -> None:
    server = None
    if store == "s3":
        pytest.importorskip("boto3")
        from ._s3server import S3Server, aws_env

        aws_env(monkeypatch)
        server = S3Server().start()
        # A bucket of its own: moto's buckets outlive a server started in this process.
        server.client().create_bucket(Bucket="scheduled")
        where = f'[destinations.bucket]\nurl = "s3://scheduled/nightly/"\ns3_endpoint = "{server.endpoint}"\n'
    try:
        dest = "bucket" if store == "s3" else "local"
        env = make_env(tmp_path, demo_db, tables=(where if server else "") + (
            f'[schedules.nightly]\nsource = "demo"\ndestination = "{dest}"\ncron = "{EVERY_2S}"\n'
            'timezone = "Europe/Paris"\nkeep_last = 2\n'))
        with TestClient(env.app(), base_url="http://127.0.0.1") as client:
            wait_until(lambda: sum(j["status"] == "succeeded"
                                   for j in scheduled_jobs(client, env, "schedule:nightly")) >= 4,
                       60, "four scheduled exports")
            listed = client.get("/api/schedules", headers=bearer(env)).json()["schedules"]
        jobs = [j for j in scheduled_jobs_after(env) if j["status"] == "succeeded"]
        jobs.sort(key=lambda j: j["id"])
        assert len(jobs) >= 4
        newest = [j["path"] for j in jobs[-2:]]
        if server:
            listed_keys = server.client().list_objects_v2(Bucket="scheduled").get("Contents", [])
            keys = {o["Key"] for o in listed_keys}
            left = {f"s3://scheduled/{k}" for k in keys if not k.endswith(".sha256")}
            sidecars = {p.removeprefix("s3://scheduled/") + ".sha256" for p in newest}
            assert {k for k in keys if k.endswith(".sha256")} == sidecars
        else:
            names = os.listdir(env.out)
            left = {str(env.out / n) for n in names if not n.endswith(".sha256")}
            sidecars = {os.path.basename(p) + ".sha256" for p in newest}
            assert {n for n in names if n.endswith(".sha256")} == sidecars
        assert left == set(newest)
        # The history says which files retention removed; the rest are still there.
        assert [j["deleted"] for j in jobs] == [True] * (len(jobs) - 2) + [False, False]
        # Each run is in the audit trail: the start of the run, the export, the retention.
        entries = audit.entries(env.state, limit=1000)
        runs = [e for e in entries if e["action"] == "schedule.run" and e["actor"] == "schedule:nightly"]
        assert {e["detail"]["job"] for e in runs} >= {j["id"] for j in jobs}
        pruned = [p for e in entries if e["action"] == "retention" for p in e["detail"]["deleted"]]
        assert sorted(pruned) == sorted(j["path"] for j in jobs[:-2])
        assert audit.verify_chain(env.state).ok
        # The API lists the schedule, its next due time and its runs.
        (schedule,) = listed
        assert schedule["cron"] == EVERY_2S and schedule["retention"] == {"keep_last": 2}
        assert schedule["timezone"] == "Europe/Paris" and schedule["next_due"]
        assert {r["job"] for r in schedule["runs"]} >= {j["id"] for j in jobs[:3]}
    finally:
        if server:
            client = server.client()
            for o in client.list_objects_v2(Bucket="scheduled").get("Contents", []):
                client.delete_object(Bucket="scheduled", Key=o["Key"])
            client.delete_bucket(Bucket="scheduled")
            server.stop()


def scheduled_jobs_after(env: ServiceEnv, actor: str = "schedule:nightly") -> list[dict[str, Any]]:
    """The scheduled jobs from the state database, after the service stopped."""
    from sqlsnap.service.jobs import job_json

    rows = env.state.all("SELECT * FROM jobs WHERE actor = ? ORDER BY id", [actor])
    return [job_json(r) for r in rows]


def _serve(env: ServiceEnv, port: int) -> subprocess.Popen[bytes]:
    code = "import sys; from sqlsnap.cli import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, "serve", "-c", str(env.config_path),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_two_service_processes_sharing_a_state_database_run_each_due_time_once(
        tmp_path: Path, demo_db: Path) -> None:
    import httpx

    from sqlsnap.service.state import State

    env = make_env(tmp_path, demo_db, tables=(
        '[schedules.often]\nsource = "demo"\ndestination = "local"\ncron = "* * * * * *"\nkeep_last = 50\n'))
    env.state.close()
    ports = [free_port(), free_port()]
    procs = [_serve(env, p) for p in ports]
    try:
        for port in ports:  # both up and answering
            wait_until(lambda port=port: _answers(httpx, port), 30, f"the service on port {port}")
        time.sleep(8)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)  # uvicorn's graceful stop: the lifespan ends
        errors = [proc.communicate(timeout=60)[1].decode() for proc in procs]
    assert all(p.returncode == 0 for p in procs), errors
    db = sqlite3.connect(env.root / "state.db")
    runs = db.execute("SELECT due, job_id FROM schedule_runs WHERE schedule = 'often' "
                      "ORDER BY due").fetchall()
    jobs = db.execute("SELECT id FROM jobs WHERE actor = 'schedule:often'").fetchall()
    starts = db.execute("SELECT count(*) FROM audit WHERE action = 'export.start' "
                        "AND actor = 'schedule:often'").fetchone()[0]
    db.close()
    dues = [d for d, _ in runs]
    assert len(dues) >= 5
    # One run per due time: as many jobs as due seconds between the first and the last run,
    # not twice as many (two processes each ticking every second).
    span = round(dues[-1] - dues[0]) + 1
    assert len(jobs) == starts == len(runs) <= span
    assert {j for (j,) in jobs} == {j for _, j in runs}
    assert all(float(d).is_integer() for d in dues) and len(set(dues)) == len(dues)
    assert audit.verify_chain(State(str(env.root / "state.db"))).ok  # two writers, one whole chain


def test_two_schedulers_that_see_the_same_due_time_at_once_claim_it_once(tmp_path: Path,
                                                                         demo_db: Path) -> None:
    """The race the processes above rarely hit: both read the last due time before either
    claims the next one. The claim in the state database lets exactly one through."""
    from sqlsnap.service.context import Service
    from sqlsnap.service.jobs import Jobs
    from sqlsnap.service.schedules import Scheduler
    from sqlsnap.service.state import State

    env = make_env(tmp_path, demo_db, tables=(
        '[schedules.m]\nsource = "demo"\ndestination = "local"\ncron = "* * * * *"\n'))
    at = math.floor(time.time() / 60) * 60 + 0.5
    states = [env.state, State(env.config.state_path)]  # two connections, as two processes have
    jobs = [Jobs(env.config, st) for st in states]
    schedulers = [Scheduler(Service(env.config, st, j), started=at - 30) for st, j in zip(states, jobs)]
    schedule = env.config.schedules["m"]
    try:
        seen = [s.due(schedule, at) for s in schedulers]
        assert seen[0] == seen[1] and seen[0] is not None and seen[0].at == at - 0.5
        barrier = threading.Barrier(2)
        won: list[bool] = []

        def claim(s: Scheduler) -> None:
            barrier.wait()
            won.append(s.claim(schedule, seen[0]))  # type: ignore[arg-type]

        threads = [threading.Thread(target=claim, args=(s,)) for s in schedulers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(won) == [False, True]
        assert [s.due(schedule, at) for s in schedulers] == [None, None]  # claimed: nothing left
    finally:
        for j in jobs:
            j.close()
        states[1].close()


def _answers(httpx: Any, port: int) -> bool:
    try:
        return bool(httpx.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code == 200)
    except httpx.HTTPError:
        return False


def test_a_missed_due_time_runs_once_at_start_or_is_recorded(tmp_path: Path, demo_db: Path) -> None:
    from sqlsnap.service.context import Service
    from sqlsnap.service.jobs import Jobs
    from sqlsnap.service.schedules import SCHEMA, Scheduler

    env = make_env(tmp_path, demo_db, tables=(
        '[schedules.run]\nsource = "demo"\ndestination = "local"\ncron = "* * * * *"\n'
        '[schedules.skip]\nsource = "demo"\ndestination = "local"\ncron = "* * * * *"\nmissed = "skip"\n'))
    last = math.floor(time.time() / 60) * 60 - 1200  # the last run, 20 minutes ago
    env.state.execute(SCHEMA)
    for name in ("run", "skip"):
        env.state.execute("INSERT INTO schedule_runs (schedule, due, status, claimed) "
                          "VALUES (?, ?, 'started', ?)", [name, last, last])
    jobs = Jobs(env.config, env.state)
    # The service was down from then until 10.5 minutes later: due times last+60 .. last+600.
    started = last + 630
    scheduler = Scheduler(Service(env.config, env.state, jobs), started=started)
    try:
        (job_id,) = scheduler.run_due(started + 1)
        assert scheduler.run_due(started + 2) == []  # nothing new is due
        job = wait_for(jobs.get, job_id)
        assert job["status"] == "succeeded" and job["actor"] == "schedule:run"
    finally:
        jobs.close()
    due = _iso(last + 600)
    assert scheduler.runs("run")[0] == {"due": due, "status": "started", "job": job_id, "missed": 9}
    assert scheduler.runs("skip")[0] == {"due": due, "status": "missed", "job": None, "missed": 10}
    missed = {e["actor"]: e["detail"] for e in audit.entries(env.state) if e["action"] == "schedule.missed"}
    assert missed == {"schedule:run": {"missed": 9, "until": _iso(last + 600), "policy": "run"},
                      "schedule:skip": {"missed": 10, "until": _iso(last + 600), "policy": "skip"}}
    assert not env.state.all("SELECT id FROM jobs WHERE actor = 'schedule:skip'")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    received: list[tuple[str, dict[str, Any]]] = []
    handler = type("Handler", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_webhook_gets_the_failure_notice_of_a_scheduled_export_whose_source_is_down(
        tmp_path: Path, demo_db: Path, receiver: tuple[str, list[tuple[str, dict[str, Any]]]]) -> None:
    pytest.importorskip("psycopg")
    base, received = receiver
    hook = f"{base}/hooks/T0KEN-s3cr3t"
    (tmp_path / "hook-url").write_text(hook + "\n")
    port = free_port()  # nothing listens there: the source is down
    env = make_env(tmp_path, demo_db, extra_sources={"down": f"postgresql://backup@127.0.0.1:{port}/app"},
                   tables=('[schedules.nightly]\nsource = "down"\ndestination = "local"\n'
                           f'cron = "{EVERY_2S}"\nkeep_last = 1\n[notify]\nwebhook_url_file = "hook-url"\n'))
    with TestClient(env.app(), base_url="http://127.0.0.1"):
        wait_until(lambda: received, 60, "a webhook notice")
    path, notice = received[0]
    assert path == "/hooks/T0KEN-s3cr3t"
    assert notice["event"] == "export.failed" and notice["status"] == "failed"
    assert notice["source"] == "down" and notice["destination"] == "local"
    assert notice["actor"] == "schedule:nightly"
    assert str(port) in notice["error"] and notice["path"].startswith(str(env.out))
    # No secret in the notice: the error as the history shows it (masked), no webhook token.
    assert "T0KEN" not in json.dumps(notice)
    first = next(j for j in scheduled_jobs_after(env, "schedule:nightly") if j["id"] == notice["job"])
    assert notice["error"] == first["error"]
    notes = [e for e in audit.entries(env.state) if e["action"] == "notify"]
    assert notes and notes[-1]["outcome"] == "ok" and notes[-1]["detail"]["event"] == "export.failed"
    assert notes[-1]["detail"]["webhook"] == f"{base}/..."  # the token never reaches the trail
    assert "T0KEN" not in json.dumps(audit.entries(env.state, limit=1000))
    assert os.listdir(env.out) == []  # a failed export leaves nothing; retention did not run


def test_a_webhook_that_is_down_is_recorded_and_does_not_change_the_export(tmp_path: Path,
                                                                           demo_db: Path) -> None:
    port = free_port()
    env = make_env(tmp_path, demo_db, tables=(
        f'[notify]\nwebhook_url = "http://127.0.0.1:{port}/hook"\non_success = true\ntimeout_seconds = 2\n'))
    with TestClient(env.app(), base_url="http://127.0.0.1") as client:
        r = client.post("/api/exports", json={"source": "demo", "destination": "local"}, headers=bearer(env))
        job = wait_for(lambda i: client.get(f"/api/exports/{i}", headers=bearer(env)).json(), r.json()["id"])
        assert job["status"] == "succeeded"
        note = wait_until(lambda: [e for e in audit.entries(env.state) if e["action"] == "notify"], 10,
                          "the notification's audit entry")
    assert note[0]["outcome"] == "failed" and note[0]["detail"]["event"] == "export.succeeded"
    assert "ConnectionRefusedError" in note[0]["detail"]["error"]


@pytest.mark.parametrize(("table", "message"), [
    ('cron = "every night"', "is not a cron expression"),
    ('cron = "0 2 * * *"\ntimezone = "Mars/Olympus"', "timezone 'Mars/Olympus' is unknown"),
    ('cron = "0 2 * * *"\nkeep_last = 0', "keep_last must be a whole number of at least 1"),
    ('cron = "0 2 * * *"\nmax_age = "forever"', "max_age 'forever' is not an age"),
    ('cron = "0 2 * * *"\nmissed = "later"', 'missed must be "run"'),
    ('cron = "0 2 * * *"\nkeep_hourly = 3', "unknown key 'keep_hourly' in [schedules.s]"),
])
def test_a_wrong_schedule_is_refused_at_start_with_the_key_at_fault(tmp_path: Path, table: str,
                                                                    message: str) -> None:
    config = tmp_path / "service.toml"
    config.write_text('[sources.demo]\nurl = "sqlite:///x.db"\n[destinations.local]\npath = "out"\n'
                      f'[schedules.s]\nsource = "demo"\ndestination = "local"\n{table}\n')
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(config, env={})


def test_a_schedule_naming_an_unknown_source_or_a_webhook_with_no_url_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "service.toml"
    base = '[sources.demo]\nurl = "sqlite:///x.db"\n[destinations.local]\npath = "out"\n'
    config.write_text(base + '[schedules.s]\nsource = "prod"\ndestination = "local"\ncron = "0 2 * * *"\n')
    with pytest.raises(ConfigError, match=r"source 'prod' is not a \[sources.NAME\] table; choose one of"):
        load_config(config, env={})
    config.write_text(base + '[notify]\nwebhook_url_env = "HOOK"\n')
    with pytest.raises(ConfigError, match="environment variable HOOK"):
        load_config(config, env={})

