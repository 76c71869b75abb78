"""Segments, formats and encryption in the service (issue 16): the API and the export form
choose a segment (checked before anything runs, never pasted into SQL), JSON or JSON Lines
(downloaded as a tar stream) and age encryption to the destination's recipients; the job, the
history and the audit trail say which; a source's default segment applies when a request
names none; bad input gets the one error shape (API) or an error on the form, never a 500."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from sqlsnap.service.config import ConfigError, load_config  # noqa: E402
from sqlsnap.snapshot import verify  # noqa: E402

from ._service import PASSWORD, ServiceEnv, build_demo, make_env, wait_for  # noqa: E402
from ._service import bearer as auth  # noqa: E402


def keypair(folder: Path) -> tuple[Path, str]:
    key = folder / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True)
    return key, public.stdout.strip()


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo") / "demo.db")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return keypair(tmp_path_factory.mktemp("age"))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, demo_db: Path, key: tuple[Path, str]) -> ServiceEnv:
    root = tmp_path_factory.mktemp("service")
    (root / "sealed").mkdir()
    # A second destination whose exports are encrypted to one recipient, and always.
    extra = f'\n[destinations.sealed]\npath = "sealed"\nencrypt_to = ["{key[1]}"]\nencrypt_required = true\n'
    return make_env(root, demo_db, tables=extra)


@pytest.fixture(scope="module")
def client(env: ServiceEnv) -> Iterator[TestClient]:
    with TestClient(env.app(), base_url="http://127.0.0.1") as c:
        yield c


def error(response: Any, status: int) -> str:
    """The one error shape; its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"status", "code", "message"}
    assert body["error"]["status"] == status
    return str(body["error"]["message"])


def export(client: TestClient, env: ServiceEnv, **body: Any) -> dict[str, Any]:
    r = client.post("/api/exports", headers=auth(env),
                    json={"source": "demo", "destination": "local", **body})
    assert r.status_code == 202, r.text
    return wait_for(lambda i: client.get(f"/api/exports/{i}", headers=auth(env)).json(), r.json()["id"])


def counts(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def untar(data: bytes, into: Path) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        names = tar.getnames()
        tar.extractall(into, filter="data")
    return names


def test_a_segment_as_json_lines_downloads_as_a_tar_and_verifies(client: TestClient, env: ServiceEnv,
                                                                  tmp_path: Path) -> None:
    job = export(client, env, format="jsonl", compress="none",
                 segment={"where": ["companies.id = 2"]})
    assert job["status"] == "succeeded", job
    assert job["format"] == "jsonl" and job["segment"] == "companies.id = 2" and not job["encrypted"]
    assert job["filename"] == Path(job["path"]).name + ".tar"
    assert job["options"]["segment"]["closure"] is True
    assert job["options"]["segment"]["where"] == {"companies": [{"column": "id", "op": "=", "values": [2]}]}
    demo = env.root / "demo.db"
    assert job["summary"]["rows_per_table"]["companies"] == 1
    sites = counts(demo, "SELECT count(*) FROM sites WHERE company_id = 2")
    assert job["summary"]["rows_per_table"]["sites"] == sites
    r = client.get(f"/api/exports/{job['id']}/download", headers=auth(env))
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
    assert f'filename="{job["filename"]}"' in r.headers["content-disposition"]
    folder = Path(job["path"]).name
    names = untar(r.content, tmp_path)
    assert f"{folder}/metadata.json" in names and f"{folder}/companies.jsonl" in names
    result = verify(str(tmp_path / folder), integrity=True)
    assert result.ok and result.tables["companies"] == 1
    assert result.total_rows == job["summary"]["rows"]
    # The page's verify works on the folder too; the history and the audit trail name the segment.
    checked = client.post(f"/api/exports/{job['id']}/verify", headers=auth(env)).json()
    assert checked["ok"] and checked["rows"] == job["summary"]["rows"]
    started = next(e for e in client.get("/api/audit", headers=auth(env)).json()["entries"]
                   if e["action"] == "export.start" and e["target"] == f"job {job['id']}")
    assert started["detail"]["segment"] == "companies.id = 2" and started["detail"]["format"] == "jsonl"
    listed = next(j for j in client.get("/api/exports", headers=auth(env)).json()["exports"]
                  if j["id"] == job["id"])
    assert listed["segment"] == "companies.id = 2"
    # Deleting removes the whole folder.
    assert client.delete(f"/api/exports/{job['id']}", headers=auth(env)).status_code == 200
    assert not Path(job["path"]).exists()


def test_the_other_segment_options_reach_the_export(client: TestClient, env: ServiceEnv) -> None:
    job = export(client, env, segment={"tables": ["incidents"], "closed": True, "limit": 3, "seed": 1})
    assert job["status"] == "succeeded", job
    assert job["summary"]["rows_per_table"]["incidents"] == 3
    assert job["segment"] == "tables incidents closed; limit 3 seed 1"
    plan = client.get("/api/plan", headers=auth(env),
                      params={"source": "demo", "where": "companies.id = 2", "closure": "false"}).json()
    assert plan["segment_text"] == "companies.id = 2; no closure"
    assert plan["filters"] == {"companies": [{"column": "id", "op": "=", "values": [2]}]}


@pytest.mark.parametrize(("body", "status", "expected"), [
    ({"segment": {"where": ["companies.id = 1 OR 1=1"]}}, 400, "cannot read --where"),
    ({"segment": {"where": ["companies.id = 1; DROP TABLE companies"]}}, 400, "cannot read --where"),
    ({"segment": {"where": ["id = 1"]}}, 400, "names no table"),
    ({"segment": {"since": "October"}}, 400, "is not a date"),
    ({"segment": {"sample": "200%"}}, 400, "percentage"),
    ({"segment": {"closed": True}}, 400, "name the tables"),
    ({"segment": {"wher": ["companies.id = 1"]}}, 422, "segment.wher"),
    ({"segment": {"limit": 0}}, 422, "segment.limit"),
    ({"format": "csv"}, 422, "format"),
    ({"encrypt": True}, 400, "names no age recipient"),
    ({"destination": "sealed", "encrypt": False}, 400, "encrypted exports only"),
    ({"destination": "sealed", "format": "jsonl"}, 400, "cannot be encrypted"),
])
def test_bad_requests_get_the_one_error_shape_and_start_nothing(client: TestClient, env: ServiceEnv,
                                                                body: dict[str, Any], status: int,
                                                                expected: str) -> None:
    before = len(client.get("/api/exports", headers=auth(env)).json()["exports"])
    r = client.post("/api/exports", headers=auth(env),
                    json={"source": "demo", "destination": "local", **body})
    assert expected in error(r, status)
    assert len(client.get("/api/exports", headers=auth(env)).json()["exports"]) == before
    if status == 400:
        refused = client.get("/api/audit", headers=auth(env)).json()["entries"][0]
        assert refused["action"] == "export.start" and refused["outcome"] == "refused"


def test_an_unknown_name_in_a_segment_fails_the_plan_with_the_valid_names(client: TestClient,
                                                                          env: ServiceEnv) -> None:
    plan = client.get("/api/plan", headers=auth(env), params={"source": "demo", "where": "companys.id = 2"})
    assert "did you mean 'companies'" in error(plan, 404)
    job = export(client, env, segment={"where": ["companies.nope = 2"]})
    assert job["status"] == "failed" and "nope" in job["error"]


def test_exports_to_a_destination_with_recipients_are_encrypted(client: TestClient, env: ServiceEnv,
                                                                 key: tuple[Path, str]) -> None:
    job = export(client, env, destination="sealed", compress="gzip")
    assert job["status"] == "succeeded", job
    assert job["encrypted"] and job["path"].endswith(".json.gz.age")
    path = Path(job["path"])
    assert path.read_bytes().startswith(b"age-encryption.org/v1\n")
    # The service has no private key: its verify checks the checksum only; with the key, all.
    checked = client.post(f"/api/exports/{job['id']}/verify", headers=auth(env)).json()
    assert checked["ok"] and checked["content_checked"] is False
    full = verify(str(path), identities=[str(key[0])])
    assert full.ok and full.total_rows == job["summary"]["rows"]
    r = client.get(f"/api/exports/{job['id']}/download", headers=auth(env))
    assert r.content == path.read_bytes()
    started = next(e for e in client.get("/api/audit", headers=auth(env)).json()["entries"]
                   if e["action"] == "export.start" and e["target"] == f"job {job['id']}")
    assert started["detail"]["encrypted"] is True
    sources = client.get("/api/sources", headers=auth(env)).json()["destinations"]
    assert {"name": "sealed", "location": str(env.root / "sealed"), "encrypt_to": 1,
            "encrypt_required": True} in sources


def test_a_source_default_segment_applies_unless_the_request_names_one(tmp_path: Path,
                                                                        demo_db: Path) -> None:
    env = make_env(tmp_path, demo_db)
    text = env.config_path.read_text().replace(
        'environment = "test"\n',
        'environment = "test"\n[sources.demo.segment]\nwhere = ["companies.id = 3"]\n')
    env.config_path.write_text(text)
    env.config = load_config(env.config_path, env={})
    with TestClient(env.app(), base_url="http://127.0.0.1") as client:
        default = export(client, env)
        assert default["segment"] == "companies.id = 3"
        assert default["summary"]["rows_per_table"]["companies"] == 1
        whole = export(client, env, segment={})
        assert whole["segment"] == "" and whole["summary"]["rows_per_table"]["companies"] == counts(
            env.root / "demo.db", "SELECT count(*) FROM companies")
        # The export page shows the default filled in, and its plan.
        login(client)
        page = client.get("/export").text
        assert "companies.id = 3</textarea>" in page and "Export Segment" in page


@pytest.mark.parametrize(("source", "destination", "expected"), [
    ('[sources.demo.segment]\nwhere = ["companies.id == 3"]\n', "",
     "[sources.demo.segment]: cannot read --where"),
    ('[sources.demo.segment]\nlimits = 3\n', "", "unknown key 'limits' in [sources.demo.segment]"),
    ('segment_file = "nowhere.toml"\n', "", "segment_file"),
    ("", 'encrypt_to = ["age1notakey"]\n', "[destinations.local]: invalid age recipient"),
    ("", "encrypt_required = true\n", "encrypt_required needs the recipients"),
])
def test_a_wrong_default_segment_or_recipient_stops_the_start(tmp_path: Path, source: str, destination: str,
                                                              expected: str) -> None:
    config = tmp_path / "service.toml"
    (tmp_path / "out").mkdir()
    config.write_text(f'[sources.demo]\nurl = "sqlite:///{tmp_path}/x.db"\n{source}\n'
                      f'[destinations.local]\npath = "out"\n{destination}')
    with pytest.raises(ConfigError) as exc:
        load_config(config, env={})
    assert expected in str(exc.value)


def login(client: TestClient) -> str:
    page = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert page is not None
    client.post("/login", data={"email": "ana@example.com", "password": PASSWORD, "csrf": page.group(1)})
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/history").text)
    assert found is not None
    return found.group(1)


def test_the_export_form_shows_a_bad_segment_as_an_error_on_the_form(client: TestClient,
                                                                     env: ServiceEnv) -> None:
    csrf = login(client)
    page = client.get("/export", params={"source": "demo", "seg": "1", "where": "companies.id = 2"})
    assert page.status_code == 200
    assert 'Segment: <span class="mono">companies.id = 2</span>' in page.text
    assert "Export Segment" in page.text
    bad = client.get("/export", params={"source": "demo", "seg": "1", "where": "companies.id = 1 OR 1=1"})
    assert bad.status_code == 200 and "cannot read --where" in bad.text and "export-button" not in bad.text
    before = len(client.get("/api/exports", headers=auth(env)).json()["exports"])
    for fields in ({"where": "companies.id = 1 OR 1=1"}, {"limit": "ten"}, {"format": "xml"},
                   {"encrypt": "yes"}):
        r = client.post("/export", data={"csrf": csrf, "source": "demo", "destination": "local", **fields})
        assert r.status_code == 400, fields
        assert 'role="alert"' in r.text and "<h1>Export a database</h1>" in r.text
        shown = json.dumps(fields)
        assert "Internal" not in r.text, shown
    assert len(client.get("/api/exports", headers=auth(env)).json()["exports"]) == before
    # A good one starts and its page names the segment and the format.
    r = client.post("/export", data={"csrf": csrf, "source": "demo", "destination": "local",
                                     "format": "jsonl", "where": "companies.id = 2", "compress": "zstd"},
                    follow_redirects=False)
    assert r.status_code == 303
    job_id = int(r.headers["location"].rsplit("/", 1)[1])
    job = wait_for(lambda i: client.get(f"/api/exports/{i}", headers=auth(env)).json(), job_id)
    assert job["status"] == "succeeded" and job["format"] == "jsonl"
    page_text = client.get(f"/exports/{job_id}").text
    assert "companies.id = 2" in page_text and "JSON Lines folder, zstd" in page_text
    assert "companies.id = 2" in client.get("/history").text


def test_a_json_lines_export_to_s3_downloads_verifies_and_deletes(tmp_path: Path, demo_db: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("boto3")
    from ._service import s3_env

    with s3_env(tmp_path, demo_db, monkeypatch, "lines") as (env, server):
        with TestClient(env.app(), base_url="http://127.0.0.1") as client:
            job = export(client, env, destination="bucket", format="jsonl",
                         segment={"where": ["companies.id = 2"]})
            assert job["status"] == "succeeded", job
            assert job["path"] == f"s3://lines/sqlsnap/{Path(job['path']).name}"
            # Through the service as a tar stream (a prefix has no one object to presign).
            r = client.get(f"/api/exports/{job['id']}/download", headers=auth(env))
            assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
            folder = Path(job["path"]).name
            assert f"{folder}/companies.jsonl.zst" in untar(r.content, tmp_path / "got")
            local = verify(str(tmp_path / "got" / folder))
            assert local.ok and local.tables["companies"] == 1
            # The page's Verify reads the prefix in the bucket.
            checked = client.post(f"/api/exports/{job['id']}/verify", headers=auth(env)).json()
            assert checked["ok"] and checked["rows"] == job["summary"]["rows"], checked
            assert client.delete(f"/api/exports/{job['id']}", headers=auth(env)).status_code == 200
        assert server.client().list_objects_v2(Bucket="lines").get("KeyCount") == 0
