"""Two-person approval and exports with a lifetime (issue 17): on a source with
``approval = true`` an export that writes protected columns (unmasked PII, a deny-listed
column included by name) does not start until a second admin approves it; the requester
cannot approve their own; a refused request never runs; request, answer and export are
linked in the audit trail. An export given a lifetime (API or form) is deleted when it
expires, and the history and the audit trail say so."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from sqlsnap.service import audit, auth  # noqa: E402
from sqlsnap.service.config import load_config  # noqa: E402

from ._service import PASSWORD, ServiceEnv, build_demo, make_env, wait_for  # noqa: E402
from ._service import bearer as as_  # noqa: E402

SECOND = "bo@example.com"


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo") / "demo.db")


@pytest.fixture
def env(tmp_path: Path, demo_db: Path) -> ServiceEnv:
    return approval_env(tmp_path, demo_db)


def approval_env(tmp_path: Path, demo_db: Path) -> ServiceEnv:
    """A service whose demo source has ``approval = true``, with a second admin."""
    env = make_env(tmp_path, demo_db)
    text = env.config_path.read_text()
    text = text.replace('environment = "test"\n', 'environment = "test"\napproval = true\n', 1)
    env.config_path.write_text(text)
    env.config = load_config(env.config_path, env={})
    assert env.config.sources["demo"].approval
    auth.add_user(env.state, SECOND, "admin", PASSWORD)
    env.tokens["second"] = auth.create_token(env.state, SECOND, "second", 30)
    return env


@pytest.fixture
def client(env: ServiceEnv) -> Iterator[TestClient]:
    with TestClient(env.app(), base_url="http://127.0.0.1") as c:
        yield c


def history(client: TestClient, env: ServiceEnv) -> list[dict[str, Any]]:
    exports: list[dict[str, Any]] = client.get("/api/exports", headers=as_(env, "admin")).json()["exports"]
    return exports


def test_an_export_of_unmasked_pii_waits_for_a_second_admin(client: TestClient, env: ServiceEnv) -> None:
    r = client.post("/api/exports", json={"source": "demo", "destination": "local"},
                    headers=as_(env, "admin"))
    assert r.status_code == 202, r.text
    waiting = r.json()
    assert waiting["status"] == "awaiting_approval" and "id" not in waiting
    assert "users.email (unmasked; the PII preset would fake it)" in waiting["protected"]
    approval_id = waiting["approval"]
    assert history(client, env) == []  # nothing started

    # The requester cannot approve (nor refuse) their own; a viewer cannot either.
    for action in ("approve", "refuse"):
        r = client.post(f"/api/approvals/{approval_id}/{action}", headers=as_(env, "admin"))
        assert r.status_code == 403 and "their own" in r.json()["error"]["message"]
    assert client.post(f"/api/approvals/{approval_id}/approve", headers=as_(env, "viewer")).status_code == 403
    assert history(client, env) == []
    pending = client.get(f"/api/approvals/{approval_id}", headers=as_(env, "second")).json()
    assert pending["status"] == "pending" and pending["requester"] == "ana@example.com"

    r = client.post(f"/api/approvals/{approval_id}/approve", headers=as_(env, "second"))
    assert r.status_code == 200, r.text
    answered = r.json()
    assert answered["status"] == "approved" and answered["decided_by"] == SECOND
    job = wait_for(lambda i: client.get(f"/api/exports/{i}", headers=as_(env, "second")).json(),
                   answered["job"])
    assert job["status"] == "succeeded" and job["actor"] == "ana@example.com"
    # Answered once: a second answer is refused.
    assert client.post(f"/api/approvals/{approval_id}/refuse", headers=as_(env, "second")).status_code == 409

    trail = list(reversed(audit.entries(env.state, limit=1000)))
    linked = [(e["action"], e["actor"], e["outcome"]) for e in trail
              if e["target"] in (f"approval {approval_id}", f"job {job['id']}")]
    assert linked == [
        ("approval.request", "ana@example.com", "pending"),
        ("approval.approve", "ana@example.com", "refused"),
        ("approval.refuse", "ana@example.com", "refused"),
        ("export.start", "ana@example.com", "ok"),
        ("approval.approve", SECOND, "ok"),
        ("export", "ana@example.com", "ok"),
        ("approval.refuse", SECOND, "refused"),
    ]
    approve_entry = next(e for e in trail if e["action"] == "approval.approve" and e["outcome"] == "ok")
    assert approve_entry["detail"] == {"requester": "ana@example.com", "job": job["id"]}
    assert audit.verify_chain(env.state).ok


def test_a_refused_export_never_runs(client: TestClient, env: ServiceEnv) -> None:
    body = {"source": "demo", "destination": "local", "anonymize": True,
            "include_secrets": ["users.password_hash"]}
    r = client.post("/api/exports", json=body, headers=as_(env, "admin"))
    assert r.status_code == 202
    assert r.json()["protected"] == ["users.password_hash (secret, included by name)"]
    approval_id = r.json()["approval"]
    r = client.post(f"/api/approvals/{approval_id}/refuse", headers=as_(env, "second"))
    assert r.status_code == 200 and r.json()["status"] == "refused" and r.json()["job"] is None
    assert client.post(f"/api/approvals/{approval_id}/approve", headers=as_(env, "second")).status_code == 409
    assert history(client, env) == []
    listed = client.get("/api/approvals", headers=as_(env, "admin")).json()["approvals"]
    assert [(a["id"], a["status"]) for a in listed] == [(approval_id, "refused")]


def test_an_export_without_protected_columns_starts_at_once(client: TestClient, env: ServiceEnv) -> None:
    r = client.post("/api/exports", json={"source": "demo", "destination": "local", "anonymize": True},
                    headers=as_(env, "admin"))
    assert r.status_code == 202 and r.json()["status"] == "queued"
    job = wait_for(lambda i: client.get(f"/api/exports/{i}", headers=as_(env, "admin")).json(),
                   r.json()["id"])
    assert job["status"] == "succeeded"
    assert client.get("/api/approvals", headers=as_(env, "admin")).json()["approvals"] == []


def test_the_export_page_says_that_the_export_waits_for_approval(client: TestClient, env: ServiceEnv) -> None:
    login = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf is not None
    client.post("/login", data={"email": "ana@example.com", "password": PASSWORD, "csrf": csrf[1]})
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/export").text)
    assert csrf is not None
    r = client.post("/export", data={"csrf": csrf[1], "source": "demo", "destination": "local",
                                     "compress": "zstd"})
    assert r.status_code == 409
    assert "needs a second admin&#39;s approval: request 1" in r.text
    assert history(client, env) == []


def test_an_export_with_a_lifetime_is_deleted_when_it_expires_and_the_history_says_so(
        client: TestClient, env: ServiceEnv) -> None:
    # (In this file for its second admin's fixture: anonymized, so no approval is needed.)
    body = {"source": "demo", "destination": "local", "anonymize": True, "lifetime": "2s"}
    r = client.post("/api/exports", json=body, headers=as_(env, "admin"))
    assert r.status_code == 202, r.text
    job = wait_for(lambda i: client.get(f"/api/exports/{i}", headers=as_(env, "admin")).json(),
                   r.json()["id"])
    assert job["status"] == "succeeded" and job["expires"] and not job["deleted"]
    assert sorted(p.name for p in env.out.iterdir()) == [job["filename"], job["filename"] + ".sha256"]
    deadline = time.monotonic() + 30
    while not client.get(f"/api/exports/{job['id']}", headers=as_(env, "admin")).json()["deleted"]:
        assert time.monotonic() < deadline, "the export did not expire"
        time.sleep(0.2)
    assert list(env.out.iterdir()) == []
    expired = [e for e in audit.entries(env.state) if e["action"] == "expire"]
    assert [(e["actor"], e["target"], e["detail"]) for e in expired] == [
        ("service", f"job {job['id']}", {"path": job["path"], "lifetime_seconds": 2.0})]
    login(client)
    assert "The file expired and was deleted at" in client.get(f"/exports/{job['id']}").text
    assert client.get(f"/api/exports/{job['id']}/download", headers=as_(env, "admin")).status_code == 404


def test_the_export_form_offers_a_lifetime(client: TestClient, env: ServiceEnv) -> None:
    login(client)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/export?anonymize=1").text)
    assert csrf is not None
    r = client.post("/export", data={"csrf": csrf[1], "source": "demo", "destination": "local",
                                     "compress": "zstd", "anonymize": "1", "lifetime": "7d"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    job_id = int(r.headers["location"].rsplit("/", 1)[1])
    job = wait_for(lambda i: client.get(f"/api/exports/{i}", headers=as_(env, "admin")).json(), job_id)
    finished = datetime.fromisoformat(job["finished"].replace("Z", "+00:00"))
    assert datetime.fromisoformat(job["expires"].replace("Z", "+00:00")) - finished == timedelta(days=7)
    r = client.post("/export", data={"csrf": csrf[1], "source": "demo", "destination": "local",
                                     "anonymize": "1", "lifetime": "forever"})
    assert r.status_code == 400 and "unknown lifetime" in r.text


def login(client: TestClient) -> None:
    page = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert page is not None
    client.post("/login", data={"email": "ana@example.com", "password": PASSWORD, "csrf": page[1]})
