"""Secrets never leave unless asked for by name, and --anonymize leaves no personal value behind.

Known secrets and personal values are planted in the source of every dialect, and the
output's bytes (decompressed, every file of a folder, metadata included) are searched for
each one."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import zstandard
from click.testing import CliRunner

import sqlsnap
from sqlsnap.cli import main
from sqlsnap.policy import (
    DESCRIPTOR_WORDS,
    FLAG_WORDS,
    NUMBER_WORDS,
    SECRET_SUFFIXES,
    SECRET_WORDS,
    secret_match,
)
from tests.conftest import execute_script

DOCS = Path(__file__).resolve().parents[1] / "docs"

SECRETS = {
    "users.password_hash": "PLANTEDpasswordHASH2b12abcdef",
    "sessions.session_token": "PLANTEDsessionTOKEN8d1e2f",
    "sessions.csrftoken": "PLANTEDcsrfTOKEN44aa",
    "oauth_accounts.access_token": "PLANTEDaccessTOKENya29",
    "oauth_accounts.refresh_token": "PLANTEDrefreshTOKEN0g",
    "oauth_accounts.id_token": "PLANTEDidTOKENeyJhbGci",
    "api_clients.client_secret": "PLANTEDclientSECRET9f8e",
    "api_clients.api_key": "PLANTEDapiKEYsklive51",
    "api_clients.private_key": "PLANTEDprivateKEYMIIEvQ",
    "api_clients.otp_secret": "PLANTEDotpSECRETJBSWY3DP",
    "api_clients.salt": "PLANTEDsaltC0FFEE",
    "api_clients.private_key_pem": "PLANTEDprivateKEYpemMIIEow",
    "api_clients.refresh_tokens": "PLANTEDrefreshTOKENSlist1x",
    "api_clients.pin_hash": "PLANTEDpinHASH7788",
}
PERSONAL = {
    "users.email": "wilhelmina.quackenbush@realmail.test",
    "users.full_name": "Wilhelmina Quackenbush",
    "users.first_name": "Wilhelmina",
    "users.phone": "+1 415 867 5309",
    "users.date_of_birth": "1987-06-05",
    "users.last_login_ip": "203.0.113.77",
    "users.notes": "Prefers calls after six, ask for Mina",
}
#: Columns that only look secret: analysts need them, so they must be exported.
LOOKALIKES = {"sessions": ["token_type"], "oauth_accounts": ["token_type"],
              "ai_request_logs": ["prompt_tokens", "completion_tokens", "total_tokens", "token_count"],
              "api_clients": ["has_password", "token_expires_at", "api_key_last4", "otp_enabled",
                              "max_tokens"]}


def schema(url: str) -> list[str]:
    text = "VARCHAR(500)" if url.startswith("mysql") else "TEXT"
    s, p = SECRETS, PERSONAL
    return [
        f"CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(255) NOT NULL, full_name VARCHAR(200), "
        f"first_name VARCHAR(100), phone VARCHAR(40), date_of_birth DATE, last_login_ip VARCHAR(45), "
        f"password_hash VARCHAR(100), notes {text}, role VARCHAR(20))",
        "CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, "
        "session_token VARCHAR(100), token_type VARCHAR(20), csrfToken VARCHAR(100), "
        "FOREIGN KEY (user_id) REFERENCES users (id))",
        "CREATE TABLE oauth_accounts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, "
        f"access_token {text}, refresh_token {text}, id_token {text}, token_type VARCHAR(20), "
        "FOREIGN KEY (user_id) REFERENCES users (id))",
        "CREATE TABLE api_clients (id INTEGER PRIMARY KEY, name VARCHAR(50), client_secret VARCHAR(100), "
        "api_key VARCHAR(100), private_key VARCHAR(200), otp_secret VARCHAR(100), salt VARCHAR(50), "
        f"has_password BOOLEAN, token_expires_at DATE, private_key_pem {text}, refresh_tokens {text}, "
        "pin_hash VARCHAR(100), api_key_last4 VARCHAR(4), otp_enabled BOOLEAN, max_tokens INTEGER)",
        "CREATE TABLE ai_request_logs (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, "
        "prompt_tokens INTEGER, completion_tokens INTEGER, total_tokens INTEGER, token_count INTEGER, "
        "FOREIGN KEY (user_id) REFERENCES users (id))",
        f"INSERT INTO users VALUES (1, '{p['users.email']}', '{p['users.full_name']}', "
        f"'{p['users.first_name']}', "
        f"'{p['users.phone']}', '{p['users.date_of_birth']}', '{p['users.last_login_ip']}', "
        f"'{s['users.password_hash']}', '{p['users.notes']}', 'admin')",
        "INSERT INTO users VALUES (2, 'other@example.org', 'Other Person', 'Other', NULL, NULL, NULL, 'x', "
        "NULL, 'staff')",
        f"INSERT INTO sessions VALUES (1, 1, '{s['sessions.session_token']}', 'Bearer', "
        f"'{s['sessions.csrftoken']}')",
        f"INSERT INTO oauth_accounts VALUES (1, 1, '{s['oauth_accounts.access_token']}', "
        f"'{s['oauth_accounts.refresh_token']}', '{s['oauth_accounts.id_token']}', 'Bearer')",
        f"INSERT INTO api_clients VALUES (1, 'billing', '{s['api_clients.client_secret']}', "
        f"'{s['api_clients.api_key']}', '{s['api_clients.private_key']}', '{s['api_clients.otp_secret']}', "
        f"'{s['api_clients.salt']}', TRUE, '2030-01-01', '{s['api_clients.private_key_pem']}', "
        f"'[\"{s['api_clients.refresh_tokens']}\"]', '{s['api_clients.pin_hash']}', '9f8e', TRUE, 4096)",
        "INSERT INTO ai_request_logs VALUES (1, 1, 120, 80, 200, 200)",
    ]


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQLSNAP_HASH_KEY", raising=False)


def output_bytes(path: Path) -> bytes:
    """Everything that was written, decompressed: one file or every file of a folder."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    out = b""
    for f in files:
        raw = f.read_bytes()
        if f.name.endswith(".zst"):
            raw = zstandard.ZstdDecompressor().stream_reader(raw).read()
        elif f.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        out += raw
    return out


def metadata_of(path: Path) -> Any:
    if path.is_dir():
        return json.loads((path / "metadata.json").read_bytes())
    raw = output_bytes(path)
    return json.loads(raw)["metadata"]


def leaked(data: bytes, values: dict[str, str]) -> list[str]:
    return [name for name, value in values.items() if value.encode() in data]


@pytest.fixture
def planted(any_url: str) -> str:
    execute_script(any_url, schema(any_url))
    return any_url


def test_secrets_never_leave_by_default(planted: str, tmp_path: Path) -> None:
    out = tmp_path / "plain.json"
    sqlsnap.export(planted, str(out))
    data = output_bytes(out)
    assert leaked(data, SECRETS) == []
    # The search works: without --anonymize, personal data is exported as it is.
    assert leaked(data, PERSONAL) == list(PERSONAL)
    meta = metadata_of(out)
    for full in SECRETS:
        table, column = full.split(".")
        excluded = {e["name"].lower(): e["reason"] for e in meta["tables"][table]["excluded_columns"]}
        assert "deny-list" in excluded[column], (full, excluded)
        assert column not in [c["name"].lower() for c in meta["tables"][table]["columns"]]
    for table, columns in LOOKALIKES.items():
        exported = [c["name"] for c in meta["tables"][table]["columns"]]
        assert set(columns) <= set(exported), (table, exported)
    doc = json.loads(data)
    assert doc["data"]["ai_request_logs"][0]["total_tokens"] == 200
    assert doc["data"]["sessions"][0]["token_type"] == "Bearer"
    assert {k.lower() for k in meta["policy"]["excluded_columns"]} == set(SECRETS)

@pytest.mark.parametrize("layout", ["json.zst", "jsonl.gz"])
def test_anonymize_leaves_no_planted_secret_or_personal_value(planted: str, tmp_path: Path,
                                                              layout: str) -> None:
    if layout == "json.zst":
        out = tmp_path / "anon.json.zst"
        sqlsnap.export(planted, str(out), anonymize=True)
    else:
        out = tmp_path / "anon-folder"
        sqlsnap.export(planted, str(out), format="jsonl", compress="gzip", anonymize=True)
    data = output_bytes(out)
    assert leaked(data, SECRETS) == []
    assert leaked(data, PERSONAL) == []
    # Nor their distinctive parts: the name, the email's domain, the phone's area code, the exact date.
    for part in (b"Quackenbush", b"Wilhelmina", b"realmail.test", b"415 867", b"06-05", b"203.0.113.77",
                 b"Mina"):
        assert part not in data, part
    meta = metadata_of(out)
    rules = {c["name"]: c.get("rule", "keep") for c in meta["tables"]["users"]["columns"]}
    assert rules == {"id": "keep", "email": "fake", "full_name": "fake", "first_name": "fake",
                     "phone": "mask", "date_of_birth": "generalize", "last_login_ip": "mask", "notes": "mask",
                     "role": "keep"}
    assert meta["policy"]["anonymize"] is True
    assert meta["policy"]["key_source"] == "ephemeral"
    jsonschema.validate(meta, json.loads((DOCS / "metadata.schema.json").read_text()))


def test_anonymized_values_keep_their_shape(planted: str, tmp_path: Path) -> None:
    out = tmp_path / "anon.json"
    sqlsnap.export(planted, str(out), anonymize=True, hash_key="k" * 32)
    user = json.loads(out.read_bytes())["data"]["users"][0]
    local, _, domain = user["email"].partition("@")
    assert local and (domain.endswith(".example") or domain.startswith("example."))
    assert len(user["full_name"].split()) == 2
    assert user["phone"] == "+* *** *** 5309"  # the last four digits stay, the layout too
    assert user["date_of_birth"] == "1987-01-01"
    assert user["last_login_ip"] == "203.0.113.0"
    assert user["notes"] == "*" * len(PERSONAL["users.notes"])


def test_include_secret_exports_that_column_only_and_warns(planted: str, tmp_path: Path) -> None:
    out = tmp_path / "with-secret.json"
    result = CliRunner().invoke(main, ["export", planted, "-o", str(out), "-q",
                                       "--include-secret", "sessions.session_token"])
    assert result.exit_code == 0, result.output
    assert "Warning: secret column sessions.session_token is exported (--include-secret)" in result.stderr
    data = output_bytes(out)
    assert leaked(data, SECRETS) == ["sessions.session_token"]
    meta = metadata_of(out)
    column = next(c for c in meta["tables"]["sessions"]["columns"] if c["name"] == "session_token")
    assert column["secret"] is True and column["rule"] == "keep"
    assert column["rule_origin"] == "--include-secret"
    assert meta["policy"]["included_secrets"] == ["sessions.session_token"]


def test_include_secret_takes_exact_names_only(planted: str, tmp_path: Path) -> None:
    with pytest.raises(sqlsnap.UsageError, match="named exactly"):
        sqlsnap.export(planted, str(tmp_path / "x.json"), include_secrets=["sessions.*"])
    with pytest.raises(sqlsnap.NotFoundError,
                       match="has no column 'sesion_token'; did you mean 'session_token'"):
        sqlsnap.export(planted, str(tmp_path / "x.json"), include_secrets=["sessions.sesion_token"])
    assert not (tmp_path / "x.json").exists()


def test_exclude_columns_and_tables_take_globs(planted: str, tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    result = CliRunner().invoke(main, ["export", planted, "-o", str(out), "-q", "--exclude-columns",
                                       "users.phone", "--exclude-columns", "*.notes",
                                       "--exclude-tables", "ai_*"])
    assert result.exit_code == 0, result.output
    meta = metadata_of(out)
    assert "ai_request_logs" not in meta["tables"]
    assert meta["excluded_tables"] == ["ai_request_logs"]
    excluded = {e["name"]: e["reason"] for e in meta["tables"]["users"]["excluded_columns"]}
    assert excluded["phone"] == "--exclude-columns 'users.phone'"
    assert excluded["notes"] == "--exclude-columns '*.notes'"
    data = output_bytes(out)
    assert PERSONAL["users.phone"].encode() not in data and PERSONAL["users.notes"].encode() not in data


# -- the deny-list, by name ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "password", "passwd", "pwd", "password_hash", "hashed_password", "encrypted_password", "pass_hash",
    "PasswordHash", "passwordDigest", "salt", "password_salt", "secret", "client_secret", "webhook_secret",
    "stripeClientSecret", "token", "access_token", "accessToken", "refresh_token", "id_token",
    "session_token", "oauth_token", "csrfToken", "RESET-PASSWORD-TOKEN", "token_hash", "api_key", "apikey",
    "API_KEY", "x-api-key",
    "private_key", "ssh_private_key", "secret_key", "signing_key", "otp_secret", "totp_secret", "mfa_secret",
    "otp", "recovery_codes", "backup_codes", "credentials", "connection_string", "security_answer",
    # The term anywhere in the name, in the plural, with a version.
    "pwd_hash", "password_hash_v2", "private_key_pem", "secret_hash", "otp_key", "totp_key", "mfa_seed",
    "refresh_tokens", "access_tokens", "session_key", "recovery_key", "remember_digest",
    "password_reset_digest", "reset_password_token", "encryption_key", "client_secret_v2",
    "stripe_secret_key", "aws_secret_access_key", "bearer", "auth_token", "jwt", "passcode", "pin_hash",
    "passwordV2", "password2", "api_keys", "tokens", "cvv2", "csrftoken", "mfa_key", "mfa_code",
    "secret_answer", "password_hint", "cached_access_tokens", "password_history", "pin", "reset_digest",
    "activation_digest",
    # Errs on the safe side: a last word that is not known to describe the secret.
    "pin_color", "token_symbol", "salt_rounds", "otp_required_for_login", "embedding_tokens",
])
def test_deny_list_matches_secret_names(name: str) -> None:
    assert secret_match(name) is not None, name


@pytest.mark.parametrize("name", [
    "prompt_tokens", "completion_tokens", "total_tokens", "token_count", "tokenCount", "token_type",
    "tokens_used", "max_tokens", "token_expires_at", "refresh_token_expires_at", "api_key_id",
    "api_key_prefix", "password_changed_at", "password_updated_at", "has_password", "is_secret",
    "secret_question", "public_key",
    "salted", "basalt", "email", "name", "id", "keyword", "passenger", "compass", "bypass", "tokenizer",
    "password_set", "secret_question_id", "expires_at", "api_key_last4", "key_id", "keyboard_layout",
    "monkey", "bypass_cache", "otp_enabled", "mfa_enabled",
    "input_tokens", "cached_tokens", "cache_read_input_tokens", "max_output_tokens", "prompt_tokens_details",
    "token_ids", "token_scopes", "token_count_v2", "cache_key", "sort_key", "encryption_key_id",
    "email_digest", "content_digest", "mfa_method", "requires_otp", "spin", "pinned_at",
])
def test_deny_list_keeps_lookalikes(name: str) -> None:
    assert secret_match(name) is None, name


@pytest.mark.parametrize(("name", "entry"), [
    ("password_hash", "*passwordhash"), ("password_hash_v2", "*passwordhash"), ("refresh_tokens", "*tokens"),
    ("reset_password_token", "*token"), ("pin_hash", "pin"), ("recovery_codes", "*recoverycodes"),
])
def test_deny_list_reports_the_last_term_found(name: str, entry: str) -> None:
    assert secret_match(name) == entry


def test_docs_examples_of_the_deny_list_hold() -> None:
    text = (DOCS / "policy.md").read_text()
    section = text[text.index("So these are secrets: "):text.index("Decisions on names")]
    secrets, _, kept = section.partition("And these are kept: ")
    for name in re.findall(r"`([^`]+)`", secrets):
        assert secret_match(name) is not None, name
    for name in re.findall(r"`([^`]+)`", kept):
        assert secret_match(name) is None, name


def test_docs_list_the_whole_deny_list() -> None:
    text = (DOCS / "policy.md").read_text()
    section = text[text.index("## The built-in deny-list"):text.index("## The plan")]
    for entry in (*SECRET_SUFFIXES, *SECRET_WORDS, *FLAG_WORDS, *DESCRIPTOR_WORDS, *NUMBER_WORDS):
        assert f"`{entry}`" in section, entry
