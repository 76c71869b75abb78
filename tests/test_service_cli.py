"""The service's commands and configuration (issue 16): accounts with argon2 passwords and
one-time passwords, API tokens shown once and stored hashed, the audit trail's hash chain
that `sqlsnap audit verify` checks (a test edits one entry and it names exactly that one),
and a configuration that never holds a secret."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from sqlsnap.cli import main

pytest.importorskip("argon2")

from sqlsnap.service import audit, auth  # noqa: E402
from sqlsnap.service.config import ConfigError, SecurityConfig, load_config  # noqa: E402
from sqlsnap.service.state import State  # noqa: E402


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    path = tmp_path / "service.toml"
    path.write_text('[state]\npath = "state.db"\n[sources.demo]\nurl = "sqlite:///demo.db"\n'
                    '[destinations.local]\npath = "out"\n')
    return path


def cli(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def state_bytes(config: Path) -> str:
    """The state database as stored: its file and its write-ahead log."""
    return "".join(p.read_bytes().decode("latin-1") for p in sorted(config.parent.glob("state.db*")))


def test_users_add_with_a_one_time_password_printed_once(config: Path) -> None:
    code, out, err = cli("users", "add", "ana@example.com", "--role", "admin", "-c", str(config))
    assert code == 0, err
    password = out.strip()
    assert len(password) >= 20 and "one-time password" in err and password not in err
    state = State(str(config.parent / "state.db"))
    user = auth.login(state, SecurityConfig(), "ana@example.com", password, "127.0.0.1")
    assert (user.email, user.role) == ("ana@example.com", "admin")
    # Only the argon2 hash is stored.
    stored = state.one("SELECT password_hash FROM users")["password_hash"]
    assert stored.startswith("$argon2id$") and password not in state_bytes(config)
    assert cli("users", "list", "-c", str(config))[1] == "ana@example.com\tadmin\n"


def test_users_add_from_stdin_and_its_errors(config: Path) -> None:
    c = str(config)
    code, out, _ = cli("users", "add", "vic@example.com", "--role", "viewer", "--password-stdin", "-c", c,
                       input="a long enough password\n")
    assert code == 0 and out == ""
    for args, stdin, message in [
        (["vic@example.com", "--role", "viewer"], None, "already exists"),
        (["bo@example.com", "--role", "viewer", "--password-stdin"], "short\n", "at least 12 characters"),
        (["not-an-email", "--role", "viewer"], None, "is not an email address"),
    ]:
        code, _, err = cli("users", "add", *args, "-c", c, input=stdin)
        assert code == 2 and err.startswith("Error: ") and message in err and err.count("\n") == 1, err
    code, _, err = cli("users", "add", "x@example.com", "--role", "root", "-c", c)
    assert code == 2 and "'root' is not one of 'admin', 'viewer'" in err


def test_tokens_are_shown_once_stored_hashed_and_revocable(config: Path) -> None:
    c = str(config)
    cli("users", "add", "ana@example.com", "--role", "admin", "-c", c)
    code, token, err = cli("tokens", "create", "--user", "ana@example.com", "--name", "ci", "-c", c)
    token = token.strip()
    assert code == 0 and token.startswith("snp_") and token not in err
    state = State(str(config.parent / "state.db"))
    assert auth.token_user(state, token)[0] is not None
    assert token not in state_bytes(config) and auth.digest(token) in state_bytes(config)
    listed = cli("tokens", "list", "-c", c)[1]
    assert "ana@example.com\tci\t" in listed and "expires" in listed and token not in listed
    assert cli("tokens", "create", "--user", "ana@example.com", "--name", "ci", "-c", c)[0] == 2
    assert cli("tokens", "create", "--user", "nobody@example.com", "--name", "x", "-c", c)[0] == 4
    assert cli("tokens", "revoke", "--user", "ana@example.com", "--name", "ci", "-c", c)[0] == 0
    assert auth.token_user(state, token) == (None, "revoked")
    assert "revoked" in cli("tokens", "list", "-c", c)[1]
    assert cli("tokens", "revoke", "--user", "ana@example.com", "--name", "ci", "-c", c)[0] == 4


def _trail(config: Path, n: int) -> State:
    state = State(str(config.parent / "state.db"))
    for i in range(n):
        audit.record(state, actor="ana@example.com", action="export", target=f"job {i + 1}",
                     address="10.0.0.1")
    return state


def _tamper(config: Path, sql: str) -> None:
    """What someone with the file can do: drop the append-only triggers, then edit."""
    with sqlite3.connect(config.parent / "state.db") as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("DROP TRIGGER audit_no_delete")
        db.execute(sql)


def test_audit_verify_names_the_entry_that_was_edited(config: Path) -> None:
    state = _trail(config, 6)
    code, out, _ = cli("audit", "verify", "-c", str(config))
    assert code == 0 and out == "OK: the hash chain of all 6 audit entries is intact\n"
    # The triggers refuse an edit through SQL...
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        state.execute("UPDATE audit SET outcome = 'ok' WHERE id = 4")
    # ...and an edit past them breaks the chain exactly there.
    _tamper(config, "UPDATE audit SET actor = 'someone@else' WHERE id = 4")
    code, out, err = cli("audit", "verify", "-c", str(config))
    assert code == 7 and out == ""
    assert err == "Error: the audit trail is broken at entry 4: its content does not match its hash " \
                  "(the entry was changed)\n"


def test_audit_verify_names_a_rehashed_entry_and_a_removed_one(config: Path) -> None:
    _trail(config, 6)
    # Recomputing the edited entry's own hash does not help: the next entry no longer follows it.
    forged = audit.entry_hash({**dict(id=3, at="2026-01-01T00:00:00.000Z", actor="x", action="export",
                                      target="job 3", address="10.0.0.1", outcome="ok", detail="{}")},
                              State(str(config.parent / "state.db")).one(
                                  "SELECT prev_hash FROM audit WHERE id = 3")["prev_hash"])
    _tamper(config, f"UPDATE audit SET at = '2026-01-01T00:00:00.000Z', actor = 'x', hash = '{forged}' "
                    "WHERE id = 3")
    err = cli("audit", "verify", "-c", str(config))[2]
    assert "broken at entry 4: its previous-entry hash does not match" in err
    other = config.parent / "other"
    other.mkdir()
    (other / "out").mkdir()
    (other / "service.toml").write_text(config.read_text())
    _trail(other / "service.toml", 5)
    _tamper(other / "service.toml", "DELETE FROM audit WHERE id = 2")
    err = cli("audit", "verify", "-c", str(other / "service.toml"))[2]
    assert "broken at entry 3: entries 2 to 2 are missing" in err


def test_the_configuration_never_holds_a_secret(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()

    def write(source: str) -> Path:
        path = tmp_path / "c.toml"
        path.write_text(f'[sources.prod]\n{source}\n[destinations.local]\npath = "out"\n')
        return path

    with pytest.raises(ConfigError, match=r"the url holds a password; .*\(url_env\)") as raised:
        load_config(write('url = "postgresql://app:s3cret@db/app"'), env={})
    assert "s3cret" not in str(raised.value)
    url = "postgresql://app:s3cret@db/app"
    config = load_config(write('url_env = "PROD_URL"'), env={"PROD_URL": url})
    assert config.sources["prod"].url == url and "s3cret" not in repr(config)
    assert config.sources["prod"].shown_url == "postgresql://app:***@db/app"
    (tmp_path / "url").write_text(url + "\n")
    assert load_config(write('url_file = "url"'), env={}).sources["prod"].url == url
    code, _, err = cli("users", "list", "-c", str(write('url_env = "PROD_URL"')))
    assert code == 2 and "PROD_URL" in err and "is not set" in err
    code, _, err = cli("users", "list", "-c", str(write('url = "sqlite:///x.db"\npasword = "x"')))
    assert code == 2 and "unknown key 'pasword' in [sources.prod]" in err
    code, _, err = cli("users", "list", "-c", str(tmp_path / "missing.toml"))
    assert code == 2 and "not found" in err


def test_failed_logins_lock_the_account_then_the_address(config: Path) -> None:
    state = State(str(config.parent / "state.db"))
    security = SecurityConfig(login_max_failures=2, address_max_failures=4, lockout_minutes=1)
    for email in ("a@example.com", "b@example.com"):
        auth.add_user(state, email, "viewer", "a long enough password")

    def attempt(email: str, password: str, address: str = "10.0.0.1") -> str:
        try:
            auth.login(state, security, email, password, address)
        except auth.LoginRefused as exc:
            return "locked" if exc.locked else "refused"
        return "ok"

    assert [attempt("a@example.com", "wrong") for _ in range(3)] == ["refused", "refused", "locked"]
    assert attempt("a@example.com", "a long enough password") == "locked"  # the account is locked
    # Four failures from 10.0.0.1 by now: the address is refused, even for another account...
    assert attempt("b@example.com", "a long enough password") == "locked"
    # ...but not from elsewhere; and an unknown user is refused like a wrong password.
    assert attempt("b@example.com", "a long enough password", "10.0.0.2") == "ok"
    assert attempt("nobody@example.com", "x", "10.0.0.3") == "refused"
    # The lock ends after lockout_minutes.
    state.execute("UPDATE users SET locked_until = 1")
    state.execute("DELETE FROM login_failures")
    assert attempt("a@example.com", "a long enough password") == "ok"
