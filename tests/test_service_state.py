"""The service's state database, SQLite file or PostgreSQL (issue 16): each test body runs
against both backends, the PostgreSQL one in a database of its own, dropped afterwards.
Accounts, tokens and sessions; the audit trail append-only and its chain checked by
``sqlsnap audit verify``; an export end to end through the API; schedules' unique claim; the
columns added to an older state; the state URL's password never shown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from sqlsnap.cli import main  # noqa: E402
from sqlsnap.service import audit, auth  # noqa: E402
from sqlsnap.service.config import ConfigError, SecurityConfig, ServiceConfig, load_config  # noqa: E402
from sqlsnap.service.state import State  # noqa: E402
from sqlsnap.service.state_open import open_state  # noqa: E402

from ._service import ADMIN, PASSWORD, build_demo, wait_for  # noqa: E402
from .conftest import pg_database  # noqa: E402

URL_ENV = "SQLSNAP_TEST_STATE_URL"


@dataclass
class Backend:
    name: str
    config_path: Path
    env: dict[str, str]
    config: ServiceConfig

    def open(self) -> State:
        return open_state(self.config)

    def tamper(self, state: State, sql: str) -> None:
        """What someone with write access to the database can do: switch off the append-only
        triggers, then edit."""
        if self.name == "sqlite":
            import sqlite3

            with sqlite3.connect(self.config.state_path) as db:
                db.execute("DROP TRIGGER audit_no_update")
                db.execute("DROP TRIGGER audit_no_delete")
                db.execute(sql)
        else:
            import psycopg

            with psycopg.connect(self.env[URL_ENV], autocommit=True) as db:
                db.execute("ALTER TABLE audit DISABLE TRIGGER USER")
                db.execute(sql)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo") / "demo.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, demo_db: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    (tmp_path / "out").mkdir()
    sources = f'[sources.demo]\nurl = "sqlite:///{demo_db}"\n[destinations.local]\npath = "out"\n'
    security = "[security]\ncookie_secure = false\n"
    config_path = tmp_path / "service.toml"
    if request.param == "sqlite":
        config_path.write_text(f'[state]\npath = "state.db"\n{security}{sources}')
        yield Backend("sqlite", config_path, {}, load_config(config_path, env={}))
        return
    with pg_database() as url:
        # The password is what the masking is about: trust auth ignores it.
        url = url.replace("postgres@", "postgres:s3cret-pw@")
        env = {URL_ENV: url}
        monkeypatch.setenv(URL_ENV, url)  # for the CLI, which reads the process's environment
        config_path.write_text(f'[state]\nurl_env = "{URL_ENV}"\n{security}{sources}')
        yield Backend("postgresql", config_path, env, load_config(config_path, env=env))


def test_accounts_tokens_and_sessions(backend: Backend) -> None:
    state = backend.open()
    try:
        user = auth.add_user(state, ADMIN, "admin", PASSWORD)
        with pytest.raises(Exception, match="already"):  # emails compare without case, as in SQLite
            auth.add_user(state, ADMIN.upper(), "viewer", PASSWORD)
        assert auth.login(state, SecurityConfig(), ADMIN.upper(), PASSWORD, "10.0.0.1").email == ADMIN
        sid, _ = auth.new_session(state, user, SecurityConfig())
        found = auth.session_user(state, sid)
        assert found is not None and found[0].email == ADMIN
        token = auth.create_token(state, ADMIN, "ci", 30)
        assert auth.token_user(state, token)[0] is not None
        auth.revoke_token(state, ADMIN, "ci")
        assert auth.token_user(state, token) == (None, "revoked")
        assert [u["email"] for u in auth.list_users(state)] == [ADMIN]
        assert isinstance(user.id, int) and user.id >= 1
    finally:
        state.close()


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_audit_trail_is_append_only_and_verify_names_the_edited_entry(backend: Backend) -> None:
    state = backend.open()
    try:
        for i in range(6):
            audit.record(state, actor=ADMIN, action="export", target=f"job {i + 1}", address="10.0.0.1")
        code, out, _ = cli("audit", "verify", "-c", str(backend.config_path))
        assert code == 0 and out == "OK: the hash chain of all 6 audit entries is intact\n"
        for sql in ("UPDATE audit SET outcome = 'ok' WHERE id = 4", "DELETE FROM audit WHERE id = 4"):
            with pytest.raises(Exception, match="append-only"):
                state.execute(sql)
        backend.tamper(state, "UPDATE audit SET actor = 'someone@else' WHERE id = 4")
        code, out, err = cli("audit", "verify", "-c", str(backend.config_path))
        assert code == 7 and err == ("Error: the audit trail is broken at entry 4: its content does not "
                                     "match its hash (the entry was changed)\n")
    finally:
        state.close()


def test_an_export_end_to_end(backend: Backend) -> None:
    from sqlsnap.service.app import create_app

    state = backend.open()
    auth.add_user(state, ADMIN, "admin", PASSWORD)
    token = auth.create_token(state, ADMIN, "ci", 30)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with TestClient(create_app(backend.config, state), base_url="http://127.0.0.1") as client:
            body = {"source": "demo", "destination": "local", "segment": {"where": ["companies.id = 2"]}}
            r = client.post("/api/exports", headers=headers, json=body)
            assert r.status_code == 202, r.text
            job = wait_for(lambda i: client.get(f"/api/exports/{i}", headers=headers).json(), r.json()["id"])
            assert job["status"] == "succeeded" and job["segment"] == "companies.id = 2"
            assert job["seconds"] is not None and job["seconds"] > 0  # timestamps keep their fractions
            history = client.get("/api/exports", headers=headers).json()["exports"]
            assert [j["id"] for j in history] == [job["id"]]
            actions = [e["action"] for e in client.get("/api/audit", headers=headers).json()["entries"]]
            assert actions[:2] == ["export", "export.start"]
        owner = state.one("SELECT owner, heartbeat FROM jobs WHERE id = ?", [job["id"]])
        assert owner["owner"] and owner["heartbeat"] > time.time() - 60
        assert audit.verify_chain(state).ok
    finally:
        state.close()


def test_two_schedulers_claim_a_due_time_once(backend: Backend) -> None:
    from sqlsnap.service.schedule_config import ScheduleConfig
    from sqlsnap.service.schedules import SCHEMA, Due, Scheduler

    states = [backend.open(), backend.open()]
    try:
        for state in states:
            state.create(SCHEMA)
        schedule = ScheduleConfig("nightly", "demo", "local", "0 2 * * *")
        due = Due(1_800_000_000.0, 0, True)
        # Two processes' schedulers reading the same due time: claim reads only their state.
        claims = [Scheduler.claim(SimpleNamespace(state=state), schedule, due)  # type: ignore[arg-type]
                  for state in states]
        assert sorted(claims) == [False, True]
        assert states[0].one("SELECT count(*) AS n FROM schedule_runs")["n"] == 1
    finally:
        for state in states:
            state.close()


def test_columns_added_later_are_added_once(backend: Backend) -> None:
    from sqlsnap.service import jobs

    state = backend.open()
    try:
        jobs.ensure_schema(state)
        jobs.ensure_schema(state)  # again: nothing to do, no error
        job_id = state.execute("INSERT INTO jobs (actor, source, destination, target, options, status, "
                               "created, heartbeat) VALUES ('a', 'demo', 'local', '', '{}', 'queued', 1, ?)",
                               [1_765_000_000.123456])
        row = state.one("SELECT heartbeat FROM jobs WHERE id = ?", [job_id])
        assert row["heartbeat"] == 1_765_000_000.123456  # a double, not PostgreSQL's 6-digit REAL
    finally:
        state.close()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # a SQLite state has no URL
def test_the_state_url_s_password_is_never_shown(backend: Backend, tmp_path: Path) -> None:
    url = backend.env[URL_ENV]
    assert "s3cret-pw" not in repr(backend.config) and "s3cret-pw" not in backend.config.state_shown
    state = backend.open()
    state.close()
    assert "s3cret-pw" not in state.shown and "***" in state.shown
    # Written in the file with its password: refused, as a source's URL is.
    config = tmp_path / "inline.toml"
    config.write_text(backend.config_path.read_text().replace(f'url_env = "{URL_ENV}"', f'url = "{url}"'))
    with pytest.raises(ConfigError, match="holds a password"):
        load_config(config, env={})
    # A server that refuses: the message names the URL masked.
    bad = url.rsplit("/", 1)[0].replace("5432", "1") + "/nowhere"
    config.write_text(backend.config_path.read_text())
    code, _, err = cli_with_env({URL_ENV: bad}, "audit", "verify", "-c", str(config))
    assert code != 0 and "cannot connect to the state database" in err and "s3cret-pw" not in err
    assert "***" in err


def cli_with_env(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner(env=env).invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_state_url_must_be_postgresql(tmp_path: Path) -> None:
    config = tmp_path / "service.toml"
    (tmp_path / "out").mkdir()
    config.write_text('[state]\nurl = "mysql://root@127.0.0.1/x"\n[sources.demo]\nurl = "sqlite:///x.db"\n'
                      '[destinations.local]\npath = "out"\n')
    with pytest.raises(ConfigError, match="must be a postgresql:// URL"):
        load_config(config, env={})
    config.write_text('[state]\npath = "s.db"\nurl_env = "X"\n[sources.demo]\nurl = "sqlite:///x.db"\n'
                      '[destinations.local]\npath = "out"\n')
    with pytest.raises(ConfigError, match="not both"):
        load_config(config, env={"X": "postgresql:///x"})
