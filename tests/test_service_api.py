"""The HTTP API (issue 16): every endpoint refuses missing, wrong, expired and revoked tokens
and the wrong role, with one error shape; an export runs end to end (start, poll, summary,
download, verify, delete) and every step is in the audit trail; a running export is
cancelled; a restart marks a running job failed and removes its temporary file."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from sqlsnap.service import audit  # noqa: E402

from ._service import PASSWORD, ServiceEnv, build_demo, clone_env, make_env, wait_for  # noqa: E402
from ._service import bearer as auth  # noqa: E402


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo") / "demo.db")


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, demo_db: Path) -> ServiceEnv:
    env = make_env(tmp_path_factory.mktemp("template"), demo_db)
    env.state.close()  # its WAL checkpointed: the file alone is the whole state
    return env


@pytest.fixture
def env(tmp_path: Path, template: ServiceEnv) -> ServiceEnv:
    return clone_env(template, tmp_path / "svc")


@pytest.fixture
def client(env: ServiceEnv) -> Iterator[TestClient]:
    with TestClient(env.app(), base_url="http://127.0.0.1") as c:
        yield c


def assert_error(response: Any, status: int) -> dict[str, Any]:
    """The one error shape: exactly {"error": {"status", "code", "message"}}, status matching."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"status", "code", "message"}
    assert body["error"]["status"] == status
    assert body["error"]["code"] and body["error"]["message"]
    return dict(body["error"])


def export(client: TestClient, env: ServiceEnv, **body: Any) -> dict[str, Any]:
    r = client.post("/api/exports", json={"source": "demo", "destination": "local", **body},
                    headers=auth(env, "admin"))
    assert r.status_code == 202, r.text
    return wait_for(lambda i: client.get(f"/api/exports/{i}", headers=auth(env, "admin")).json(),
                    r.json()["id"])


#: (method, path, role needed, JSON body): every endpoint of the API.
ENDPOINTS = [
    ("GET", "/api/sources", "admin", None),
    ("GET", "/api/plan?source=demo", "admin", None),
    ("POST", "/api/exports", "admin", {"source": "demo", "destination": "local"}),
    ("GET", "/api/exports", "viewer", None),
    ("GET", "/api/exports/1", "viewer", None),
    ("POST", "/api/exports/1/cancel", "admin", None),
    ("GET", "/api/exports/1/download", "admin", None),
    ("POST", "/api/exports/1/verify", "admin", None),
    ("DELETE", "/api/exports/1", "admin", None),
    ("GET", "/api/schedules", "viewer", None),
    ("GET", "/api/approvals", "admin", None),
    ("GET", "/api/approvals/1", "admin", None),
    ("POST", "/api/approvals/1/approve", "admin", None),
    ("POST", "/api/approvals/1/refuse", "admin", None),
    ("GET", "/api/audit", "viewer", None),
]


def test_every_api_route_is_in_the_table(env: ServiceEnv) -> None:
    """A new endpoint without its auth tests fails here."""
    routes = {(m.upper(), re.sub(r"\{\w+_id\}", "{job_id}", path))
              for path, ops in env.app().openapi()["paths"].items() for m in ops}
    listed = {(m, p.split("?")[0].replace("/1", "/{job_id}")) for m, p, _, _ in ENDPOINTS}
    assert routes == listed


@pytest.mark.parametrize("who", ["missing", "wrong", "expired", "revoked", "basic"])
def test_every_endpoint_refuses_a_bad_token(client: TestClient, env: ServiceEnv, who: str) -> None:
    special: dict[str, dict[str, str]] = {"missing": {}, "basic": {"Authorization": "Basic YW5hOnB3"}}
    headers = special[who] if who in special else auth(env, who)
    for method, path, _, body in ENDPOINTS:
        r = client.request(method, path, headers=headers, json=body)
        error = assert_error(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"
        if who in ("expired", "revoked"):
            assert who in error["message"], (path, error)
    # Nothing was started, and the token never appears in an answer or the trail.
    assert env.state.one("SELECT count(*) AS n FROM jobs")["n"] == 0
    trail = json.dumps(client.get("/api/audit", headers=auth(env, "admin")).json())
    assert all(t not in trail for t in env.tokens.values())


def test_the_viewer_role_reads_history_and_audit_only(client: TestClient, env: ServiceEnv) -> None:
    done = export(client, env)
    assert done["status"] == "succeeded"
    for method, path, role, body in ENDPOINTS:
        r = client.request(method, path, headers=auth(env, "viewer"), json=body)
        if role == "admin":
            assert_error(r, 403)
        else:
            assert r.status_code == 200, (path, r.text)
    # The refused calls changed nothing: one job, still there, its file too.
    jobs = client.get("/api/exports", headers=auth(env, "viewer")).json()["exports"]
    assert [(j["id"], j["status"], j["deleted"]) for j in jobs] == [(1, "succeeded", False)]
    assert Path(done["path"]).is_file()


def test_one_error_shape_everywhere(client: TestClient, env: ServiceEnv) -> None:
    admin = auth(env, "admin")
    assert_error(client.get("/api/exports/999", headers=admin), 404)
    assert_error(client.get("/api/no-such-thing", headers=admin), 404)
    assert_error(client.put("/api/exports", headers=admin), 405)
    assert_error(client.get("/api/exports/abc", headers=admin), 422)
    assert_error(client.get("/api/exports?limit=0", headers=admin), 422)
    assert_error(client.post("/api/exports", headers=admin, content=b"{not json"), 422)
    assert_error(client.post("/api/exports", headers=admin, json={"source": "demo"}), 422)
    assert_error(client.post("/api/exports", headers=admin,
                             json={"source": "demo", "destination": "local", "format": "xml"}), 422)
    unknown = assert_error(client.post("/api/exports", headers=admin,
                                       json={"source": "nope", "destination": "local"}), 400)
    assert "demo" in unknown["message"]  # names the valid choices
    assert_error(client.get("/api/plan?source=nope", headers=admin), 404)
    done = export(client, env)
    assert_error(client.post(f"/api/exports/{done['id']}/cancel", headers=admin), 409)


def test_an_export_end_to_end(client: TestClient, env: ServiceEnv, tmp_path: Path) -> None:
    admin = auth(env, "admin")
    plan = client.get("/api/plan?source=demo", headers=admin).json()
    assert plan["total_tables"] == 16
    users = next(t for t in plan["tables"] if t["name"] == "users")
    assert "password_hash" in {e["name"] for e in users["excluded_columns"]}
    job = export(client, env)
    assert job["status"] == "succeeded", job
    summary = job["summary"]
    with sqlite3.connect(env.config.sources["demo"].url.removeprefix("sqlite:///")) as db:
        rows = {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in summary["rows_per_table"]}
    assert summary["rows_per_table"] == rows and summary["tables"] == 16
    path = Path(job["path"])
    assert path.parent == env.out and path.name == job["filename"]
    assert path.name.startswith("demo-export-") and path.name.endswith(f"-{job['id']}.json.zst")
    assert summary["bytes"] == path.stat().st_size
    assert summary["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert job["progress"]["tables_done"] == 16 and job["progress"]["rows"] == sum(rows.values())
    # The download streams the file as it is, with its name.
    with client.stream("GET", f"/api/exports/{job['id']}/download", headers=admin) as r:
        assert r.status_code == 200
        assert job["filename"] in r.headers["content-disposition"]
        got = b"".join(r.iter_bytes())
    assert hashlib.sha256(got).hexdigest() == summary["sha256"]
    assert client.post(f"/api/exports/{job['id']}/verify", headers=admin).json()["ok"] is True
    # Delete: the file and its checksum file go, the job stays in history, marked deleted.
    deleted = client.delete(f"/api/exports/{job['id']}", headers=admin).json()
    assert deleted["deleted"] is True and not path.exists() and not Path(str(path) + ".sha256").exists()
    assert_error(client.get(f"/api/exports/{job['id']}/download", headers=admin), 404)
    actions = [(e["action"], e["outcome"], e["actor"], e["address"])
               for e in client.get("/api/audit", headers=auth(env, "viewer")).json()["entries"]][::-1]
    assert actions == [("service.start", "ok", "service", "")] + [
        (a, o, "ana@example.com", "testclient") for a, o in (
            ("export.start", "ok"), ("export", "ok"), ("download", "ok"), ("verify", "ok"), ("delete", "ok"),
            ("download", "failed"))]


def test_a_changed_configuration_is_noted_in_the_audit_trail(env: ServiceEnv) -> None:
    from sqlsnap.service.config import load_config

    def start() -> dict[str, Any]:
        with TestClient(env.app(), base_url="http://127.0.0.1") as client:
            return dict(client.get("/api/audit", headers=auth(env, "admin")).json()["entries"][0])

    first = start()
    assert (first["action"], first["detail"]["config_changed"]) == ("service.start", False)
    assert start()["detail"]["config_changed"] is False  # the same file again
    env.config_path.write_text(env.config_path.read_text() + "\n[destinations.more]\npath = \"out\"\n")
    env.config = load_config(env.config_path, env={})
    changed = start()["detail"]
    assert changed["config_changed"] is True and changed["destinations"] == ["local", "more"]
    assert changed["config_sha256"] != first["detail"]["config_sha256"]


def test_the_plan_with_the_pii_preset_on_the_api_and_the_export_page(client: TestClient,
                                                                    env: ServiceEnv) -> None:
    import re

    def masked(plan: dict[str, Any]) -> dict[str, str]:
        return {f"{t['name']}.{c['name']}": c["rule"] for t in plan["tables"] for c in t["columns"]
                if c["rule"] != "keep"}

    admin = auth(env, "admin")
    assert masked(client.get("/api/plan?source=demo", headers=admin).json()) == {}
    preset = masked(client.get("/api/plan?source=demo&anonymize=true", headers=admin).json())
    assert preset["users.email"] and preset["users.full_name"]
    # The export page shows the same masked columns, and its form carries the choice on.
    login = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf is not None
    client.post("/login", data={"email": "ana@example.com", "password": PASSWORD, "csrf": csrf[1]})
    page = client.get("/export?source=demo&anonymize=1").text
    shown = re.findall(r'<div class="masked"><span class="mono">([^<]+)</span>: ([^<]+)</div>', page)
    assert len(shown) == len(preset) and ("email", preset["users.email"]) in shown
    assert '<input type="hidden" name="anonymize" value="1">' in page
    assert 'class="masked"' not in client.get("/export?source=demo").text


def start_big_export(client: TestClient, admin: dict[str, str]) -> int:
    """Start exporting the source ``big`` and wait until it has read rows; its job id."""
    body = {"source": "big", "destination": "local", "compress": "none"}
    job_id: int = client.post("/api/exports", json=body, headers=admin).json()["id"]
    deadline = time.monotonic() + 30
    while client.get(f"/api/exports/{job_id}", headers=admin).json()["progress"].get("rows", 0) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return job_id


def test_a_running_export_is_cancelled_and_leaves_nothing(tmp_path: Path, demo_db: Path) -> None:
    big = big_sqlite(tmp_path / "big.db")
    (tmp_path / "svc").mkdir()
    env = make_env(tmp_path / "svc", demo_db, {"big": f"sqlite:///{big}"})
    admin = auth(env, "admin")
    with TestClient(env.app(), base_url="http://127.0.0.1") as client:
        job_id = start_big_export(client, admin)
        assert client.post(f"/api/exports/{job_id}/cancel", headers=admin).status_code == 200
        job = wait_for(lambda i: client.get(f"/api/exports/{i}", headers=admin).json(), job_id)
    assert job["status"] == "cancelled" and 0 < job["progress"]["rows"] < 300000
    assert sorted(p.name for p in env.out.iterdir()) == []  # no file, no temporary file
    trail = [(e["action"], e["outcome"]) for e in audit.entries(env.state)][::-1]
    assert trail[-2:] == [("export.cancel", "ok"), ("export", "cancelled")]


def big_sqlite(path: Path, rows: int = 300_000) -> Path:
    """A table that takes a few seconds to export: ``rows`` rows of 200 bytes."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute(f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
                   "INSERT INTO t SELECT i, printf('%0200d', i) FROM n")
    return path


def test_a_killed_service_leaves_no_partial_file_and_marks_the_job_failed(tmp_path: Path,
                                                                          demo_db: Path) -> None:
    """The real thing: `sqlsnap serve` killed (SIGKILL) mid-export, then started again."""
    import signal
    import subprocess
    import sys

    import httpx

    from sqlsnap.service.jobs import RESTART_ERROR

    from ._service import free_port

    big = big_sqlite(tmp_path / "big.db")
    (tmp_path / "svc").mkdir()
    env = make_env(tmp_path / "svc", demo_db, {"big": f"sqlite:///{big}"})
    env.state.close()
    sqlsnap = str(Path(sys.executable).with_name("sqlsnap"))

    def serve() -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = subprocess.Popen([sqlsnap, "serve", "-c", str(env.config_path), "--port", str(port)],
                                stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/login")
                return proc, base
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)

    admin = auth(env, "admin")
    proc, base = serve()
    try:
        job_id = httpx.post(f"{base}/api/exports", headers=admin,
                            json={"source": "big", "destination": "local", "compress": "none"}).json()["id"]
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/api/exports/{job_id}", headers=admin).json()["progress"].get("rows", 0) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # Mid-export: the temporary file is there, nothing under a final name.
        assert [p.name.startswith(".") for p in env.out.iterdir()] == [True]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # The worker process sees its service gone, cancels, and removes its temporary file.
        deadline = time.monotonic() + 20
        while list(env.out.iterdir()):
            assert time.monotonic() < deadline, list(env.out.iterdir())
            time.sleep(0.05)
        proc, base = serve()
        job = httpx.get(f"{base}/api/exports/{job_id}", headers=admin).json()
        assert (job["status"], job["error"]) == ("failed", RESTART_ERROR)
        assert list(env.out.iterdir()) == []
    finally:
        proc.kill()
        proc.wait(10)


def test_a_killed_worker_fails_its_job_and_leaves_no_file(tmp_path: Path, template: ServiceEnv) -> None:
    """A worker process killed mid-export (as the kernel's OOM killer would) cannot clean up
    after itself: the service removes its temporary file and says what happened."""
    import multiprocessing
    import os
    import signal

    from sqlsnap.service.config import load_config

    big = big_sqlite(tmp_path / "big.db")
    env = clone_env(template, tmp_path / "svc")
    env.config_path.write_text(env.config_path.read_text() + f'\n[sources.big]\nurl = "sqlite:///{big}"\n')
    env.config = load_config(env.config_path, env={})
    admin = auth(env, "admin")
    with TestClient(env.app(), base_url="http://127.0.0.1") as client:
        job_id = start_big_export(client, admin)
        workers = [p for p in multiprocessing.active_children() if p.name == "sqlsnap-export"]
        assert len(workers) == 1 and list(env.out.iterdir())  # its temporary file
        os.kill(workers[0].pid or 0, signal.SIGKILL)
        job = wait_for(lambda i: client.get(f"/api/exports/{i}", headers=admin).json(), job_id)
    assert job["status"] == "failed" and "ended unexpectedly (exit code -9)" in job["error"]
    assert list(env.out.iterdir()) == []


def test_a_restart_marks_running_jobs_failed_and_removes_their_temporary_file(env: ServiceEnv) -> None:
    from sqlsnap.service.jobs import RESTART_ERROR
    from sqlsnap.stores.file import temp_name

    # What a killed service leaves: a job row still running and the exporter's hidden file.
    target = env.out / "demo-export-2026-12-06T00-00-00Z-1.json.zst"
    env.state.execute("INSERT INTO jobs (actor, source, destination, target, options, status, created, "
                      "started) VALUES ('ana@example.com', 'demo', 'local', ?, '{}', 'running', 1, 1)",
                      [str(target)])
    leftover = Path(temp_name(str(target), "tmp"))
    leftover.write_bytes(b'{"metadata": {')
    other = env.out / "unrelated.json"
    other.write_text("{}")
    with TestClient(env.app(), base_url="http://127.0.0.1") as client:
        job = client.get("/api/exports/1", headers=auth(env, "admin")).json()
        entries = client.get("/api/audit", headers=auth(env, "admin")).json()["entries"]
    assert (job["status"], job["error"]) == ("failed", RESTART_ERROR)
    assert not leftover.exists() and other.exists()
    last = entries[0]
    assert (last["action"], last["outcome"], last["actor"]) == ("export", "failed", "service")


def test_the_openapi_document_is_served(client: TestClient) -> None:
    r = client.get("/api/openapi.json")
    doc = r.json()
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    page = client.get("/login")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert doc["paths"]["/api/exports"]["post"]["responses"]["401"]["content"]["application/json"]
    assert not any(p.startswith("/login") for p in doc["paths"])  # pages are not API


def test_an_export_to_s3_downloads_through_a_presigned_url(tmp_path: Path, demo_db: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("boto3")
    import httpx

    from ._service import s3_env

    with s3_env(tmp_path, demo_db, monkeypatch, "dumps") as (env, server):
        admin = auth(env, "admin")
        with TestClient(env.app(), base_url="http://127.0.0.1") as client:
            r = client.post("/api/exports", json={"source": "demo", "destination": "bucket"}, headers=admin)
            job = wait_for(lambda i: client.get(f"/api/exports/{i}", headers=admin).json(), r.json()["id"])
            assert job["status"] == "succeeded", job
            assert job["path"] == f"s3://dumps/sqlsnap/{job['filename']}" == job["summary"]["path"]
            r = client.get(f"/api/exports/{job['id']}/download", headers=admin, follow_redirects=False)
            assert r.status_code == 307
            url = r.headers["location"]
            assert url.startswith(f"{server.endpoint}/dumps/sqlsnap/{job['filename']}?")
            assert "X-Amz-Expires=300" in url and "X-Amz-Signature=" in url
            body = httpx.get(url).content  # the bytes come from S3, not through the service
            assert hashlib.sha256(body).hexdigest() == job["summary"]["sha256"]
            assert client.post(f"/api/exports/{job['id']}/verify", headers=admin).json()["ok"] is True
            client.delete(f"/api/exports/{job['id']}", headers=admin)
        assert server.client().list_objects_v2(Bucket="dumps").get("KeyCount") == 0


@pytest.mark.parametrize("trusted", ["testclient", "10.0.0.1"])
def test_single_sign_on_through_a_trusted_proxy_header(tmp_path: Path, demo_db: Path, trusted: str) -> None:
    """Off by default; on, only a trusted proxy's address may name the user (TestClient's
    address is "testclient")."""
    env = make_env(tmp_path, demo_db, security=f'proxy_user_header = "X-Forwarded-Email"\n'
                                                f'trusted_proxies = ["{trusted}"]\n')
    with TestClient(env.app(), base_url="http://127.0.0.1") as client:
        r = client.get("/login?next=/history", headers={"X-Forwarded-Email": "vic@example.com"},
                       follow_redirects=False)
        if trusted != "testclient":  # the header from an untrusted address is ignored
            assert r.status_code == 200 and 'name="password"' in r.text
            assert "sqlsnap_session" not in r.cookies
            return
        assert (r.status_code, r.headers["location"]) == (303, "/history")
        assert client.get("/history").status_code == 200  # the session cookie works
        assert client.get("/export").status_code == 403  # with the account's role: viewer
        client.cookies.clear()
        r = client.get("/login", headers={"X-Forwarded-Email": "nobody@example.com"}, follow_redirects=False)
        assert r.status_code == 403 and "has no account" in r.text
        assert client.get("/login", follow_redirects=False).status_code == 200  # no header: the form
        logins = [(e["actor"], e["outcome"], e["detail"]) for e in audit.entries(env.state)
                  if e["action"] == "login"][::-1]
    assert logins == [("vic@example.com", "ok", {"via": "proxy"}),
                      ("nobody@example.com", "failed", {"via": "proxy", "error": "no such account"})]


def test_a_proxy_header_without_trusted_proxies_is_refused(tmp_path: Path) -> None:
    from sqlsnap.service.config import ConfigError, load_config

    (tmp_path / "out").mkdir()
    path = tmp_path / "c.toml"
    path.write_text('[security]\nproxy_user_header = "X-Forwarded-Email"\n[sources.a]\nurl = "sqlite:///a.db"\n'
                    '[destinations.local]\npath = "out"\n')
    with pytest.raises(ConfigError, match="needs trusted_proxies"):
        load_config(path, env={})
