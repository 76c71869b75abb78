"""The plan: decided from the catalog alone, printed by `sqlsnap plan`, followed exactly by
`sqlsnap export`."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sqlsnap import UsageError, demo
from sqlsnap.cli import main
from sqlsnap.model import Column, ForeignKey, Table
from sqlsnap.plan import PlanOptions, build_plan
from sqlsnap.policy import HASH_KEY_ENV, parse_policy
from tests.conftest import execute_script

ROOT = Path(__file__).resolve().parents[1]
KEY = "plan-test-key-0123456789"


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HASH_KEY_ENV, raising=False)


def table(name: str, *columns: str, pk: tuple[str, ...] = ("id",), fks: tuple[ForeignKey, ...] = (),
          rows: int | None = 10) -> Table:
    cols = [Column(c.split(":")[0], c.split(":")[1] if ":" in c else "text", True) for c in columns]
    return Table(name, "public", name, cols, list(pk), list(fks), rows)


SCHEMA = [
    table("accounts", "id:bigint", "name", "api_key"),
    table("users", "id:integer", "account_id:bigint", "email", "full_name", "phone", "notes", "password_hash",
          "created_at:timestamp with time zone", "prompt_tokens:integer",
          fks=(ForeignKey(("account_id",), "accounts", ("id",)),)),
    table("sessions", "id:integer", "user_id:integer", "session_token", "token_type", "started_at:timestamp",
          fks=(ForeignKey(("user_id",), "users", ("id",)),)),
    table("incidents", "id:integer", "reported_by:integer", "narrative", "title",
          fks=(ForeignKey(("reported_by",), "users", ("id",)),)),
    table("debug_logs", "id:integer", "message"),
]


def plan_of(policy: str = "", **options: Any) -> Any:
    opts = PlanOptions(dialect="postgresql", policy=parse_policy(policy, "p.toml") if policy else None,
                       **options)
    return build_plan(SCHEMA, opts, {"dialect": "postgresql", "database": "app", "host": "db"})


def rules(plan: Any, name: str) -> dict[str, str]:
    return {c.name: c.rule for c in plan.table(name).columns}


def excluded(plan: Any, name: str) -> dict[str, str]:
    return {e.name: e.reason for e in plan.table(name).excluded_columns}


def codes(plan: Any) -> list[str]:
    return [n.code for n in plan.notices]


# -- deciding ------------------------------------------------------------------------------


def test_default_plan_leaves_secrets_out_and_keeps_everything_else() -> None:
    plan = plan_of()
    assert [t.name for t in plan.tables] == ["accounts", "debug_logs", "users", "incidents", "sessions"]
    assert excluded(plan, "users") == {
        "password_hash": "secret: matches the built-in deny-list (*passwordhash)"}
    assert excluded(plan, "sessions") == {"session_token": "secret: matches the built-in deny-list (*token)"}
    assert set(rules(plan, "users").values()) == {"keep"}
    assert "prompt_tokens" in rules(plan, "users") and "token_type" in rules(plan, "sessions")
    assert plan.key_source is None
    messages = [n.message for n in plan.notices]
    assert "free-text column incidents.narrative is exported as is; it may contain personal information" \
        in messages
    assert any(m.startswith("column users.email looks like personal data (email) and is exported as is")
               for m in messages)


def test_precedence_exclusion_then_secret_then_policy_then_preset() -> None:
    plan = plan_of(
        '[rules]\n"*.email" = "hash"\n"users.email" = "mask"\n"*.full_name" = "null"\n'
        '"u*.full_*" = "redact"\n'
        '"users.phone" = "keep"\n"users.notes" = "drop"\n',
        anonymize=True, exclude_columns=["users.created_*"], key_source="test")
    r = rules(plan, "users")
    assert r["email"] == "mask"  # the exact name beats the pattern
    assert r["full_name"] == "redact"  # among patterns, the last one wins
    assert r["phone"] == "keep"  # the policy beats the preset
    assert excluded(plan, "users")["notes"] == "rule drop (p.toml, line 7)"
    assert excluded(plan, "users")["created_at"] == "--exclude-columns 'users.created_*'"
    assert "password_hash" in excluded(plan, "users")
    assert rules(plan, "accounts")["name"] == "keep"  # not a people table: a company's name
    phone = next(c for c in plan.table("users").columns if c.name == "phone")
    assert phone.origin == "p.toml, line 6"
    assert "personal-data" in codes(plan)  # a phone kept on purpose is still pointed out


def test_hashed_keys_pass_their_transform_to_every_reference() -> None:
    plan = plan_of('[rules]\n"accounts.id" = "hash"\n"users.id" = "hash"\n"incidents.reported_by" = "null"\n'
                   '"sessions.user_id" = "keep"\n', key_source="test")
    account = next(c for c in plan.table("users").columns if c.name == "account_id")
    assert (account.rule, account.same_as, account.origin) == \
        ("hash", "accounts.id", "foreign key to accounts.id")
    user = next(c for c in plan.table("sessions").columns if c.name == "user_id")
    assert (user.rule, user.same_as) == ("hash", "users.id")  # an explicit keep gives way, with a notice
    assert any("sessions.user_id references users.id, so it gets the same hash" in n.message
               for n in plan.notices)
    assert rules(plan, "incidents")["reported_by"] == "null"  # nothing left to join on: kept
    assert user.describe() == "hash (as users.id)"


def test_keyed_rules_need_a_key_unless_only_the_preset_asks() -> None:
    with pytest.raises(UsageError, match=r"^p.toml, line 2: rule 'hash' for accounts.id needs a hash key"):
        plan_of('[rules]\n"accounts.id" = "hash"\n')
    plan = plan_of(anonymize=True)
    assert plan.key_source == "ephemeral" and "ephemeral-key" in codes(plan)
    assert rules(plan, "users")["email"] == "fake"
    assert plan_of(anonymize=True, key_source="SQLSNAP_HASH_KEY").key_source == "SQLSNAP_HASH_KEY"


def test_included_secrets_and_excluded_tables_are_explained() -> None:
    plan = plan_of('exclude_tables = ["debug_*"]\ninclude_secrets = ["accounts.api_key"]\n',
                   include_secrets=["sessions.session_token"])
    assert [(e.name, e.reason) for e in plan.excluded_tables] == [("debug_logs", "p.toml, line 1 'debug_*'")]
    key = next(c for c in plan.table("accounts").columns if c.name == "api_key")
    assert key.secret and key.origin == "p.toml, line 2"
    assert [n.message for n in plan.notices if n.code == "secret-included"] == [
        "secret column accounts.api_key is exported (p.toml, line 2); its values are in the file as they are "
        "in the database",
        "secret column sessions.session_token is exported (--include-secret); its values are in the file as "
        "they are in the database",
    ]


def test_render_shows_tables_rules_exclusions_and_notices() -> None:
    text = plan_of('[rules]\n"users.email" = "fake"\n', exclude_tables=["debug_*"],
                   key_source="SQLSNAP_HASH_KEY").render()
    assert text.startswith(
        "Plan for postgresql database app on db (policy p.toml; hash key: SQLSNAP_HASH_KEY)\n")
    assert "Tables to export: 4, about 40 rows" in text
    assert "    fake       email: fake (email)  [p.toml, line 2]" in text
    assert "    left out   password_hash: secret: matches the built-in deny-list (*passwordhash)" in text
    assert "Tables left out: 1\n  debug_logs: --exclude-tables 'debug_*'" in text
    assert ("  ! free-text column incidents.narrative is exported as is; it may contain personal "
            "information") in text


def test_sqlite_tables_have_row_estimates(sqlite_url: str) -> None:
    """From sqlite_stat1 once ANALYZE has run (stale, like any estimate), else counted."""
    execute_script(sqlite_url, [
        "CREATE TABLE parts (id INTEGER PRIMARY KEY, size INTEGER)",
        "CREATE INDEX small_parts ON parts (size) WHERE size < 2",
        "CREATE TABLE tags (name TEXT PRIMARY KEY) WITHOUT ROWID",
        "CREATE TABLE empty (id INTEGER PRIMARY KEY)",
        *(f"INSERT INTO parts VALUES ({i * 1000}, {i})" for i in range(1, 6)),
        "INSERT INTO tags VALUES ('a'), ('b')",
    ])

    def estimates() -> dict[str, int | None]:
        shown = CliRunner().invoke(main, ["plan", sqlite_url, "--json"])
        assert shown.exit_code == 0, shown.output
        return {t["name"]: t["estimated_rows"] for t in json.loads(shown.stdout)["tables"]}

    # Counted: large ids (max(rowid) is 5000) and a table without rowid change nothing.
    assert estimates() == {"empty": 0, "parts": 5, "tags": 2}
    text = CliRunner().invoke(main, ["plan", sqlite_url]).stdout
    assert "Tables to export: 3, about 7 rows" in text and "  parts (~5 rows)" in text
    # ANALYZE's numbers, not a count: rows added since do not show; the partial index (1 row)
    # does not lower the table's number; a table ANALYZE left out is counted.
    execute_script(sqlite_url, ["ANALYZE", "INSERT INTO parts VALUES (9000, 9)", "DELETE FROM tags",
                                "CREATE TABLE later (id INTEGER PRIMARY KEY)",
                                "INSERT INTO later VALUES (1)"])
    assert estimates() == {"empty": 0, "later": 1, "parts": 5, "tags": 2}


# -- the export follows the plan -------------------------------------------------------------


FOLLOW_SCHEMA = [
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(100), full_name VARCHAR(100), "
    "phone VARCHAR(30), notes VARCHAR(200), password_hash VARCHAR(100), token_type VARCHAR(10))",
    "CREATE TABLE incidents (id INTEGER PRIMARY KEY, reported_by INTEGER, narrative VARCHAR(500), "
    "occurred_on DATE, FOREIGN KEY (reported_by) REFERENCES users (id))",
    "CREATE TABLE debug_logs (id INTEGER PRIMARY KEY, message VARCHAR(100))",
    "INSERT INTO users VALUES (1, 'a@b.test', 'Ana Lima', '+1 555 0100', 'n', 'h', 'Bearer')",
    "INSERT INTO incidents VALUES (1, 1, 'Ana slipped', '2024-03-01')",
    "INSERT INTO debug_logs VALUES (1, 'x')",
]


def test_export_follows_exactly_the_plan_that_plan_prints(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, FOLLOW_SCHEMA)
    (tmp_path / "p.toml").write_text(
        '[rules]\n"users.id" = "hash"\n"incidents.narrative" = { rule = "truncate", length = 3 }\n'
        '"incidents.occurred_on" = { rule = "shift-dates", owner = "reported_by", max_days = 10 }\n'
        '"users.token_type" = "keep"\n')
    options = ["--anonymize", "--exclude-tables", "debug_*", "--exclude-columns", "*.phone", "--policy",
               str(tmp_path / "p.toml"), "--include-secret", "users.password_hash"]
    runner = CliRunner(env={HASH_KEY_ENV: KEY})
    shown = runner.invoke(main, ["plan", any_url, *options, "--json"])
    assert shown.exit_code == 0, shown.output
    plan = json.loads(shown.stdout)
    out = tmp_path / "out.json"
    done = runner.invoke(main, ["export", any_url, *options, "-o", str(out), "-q"])
    assert done.exit_code == 0, done.output
    meta = json.loads(out.read_bytes())["metadata"]

    assert [t["name"] for t in plan["tables"]] == list(meta["tables"])
    assert [e["name"] for e in plan["excluded_tables"]] == meta["excluded_tables"]
    for t in plan["tables"]:
        exported = meta["tables"][t["name"]]
        assert [c["name"] for c in t["columns"]] == [c["name"] for c in exported["columns"]]
        assert [c["rule"] for c in t["columns"]] == [c.get("rule", "keep") for c in exported["columns"]]
        assert t["excluded_columns"] == exported["excluded_columns"]
        # The options (defaults filled in) and the origin of each rule, as the plan shows them.
        for column, recorded in zip(t["columns"], exported["columns"]):
            where = (t["name"], column["name"])
            if column["rule"] == "keep" and not column.get("secret"):
                # A kept column records no rule, whatever kept it (users.token_type: p.toml).
                assert not {"rule", "rule_options", "rule_origin", "secret"} & set(recorded), where
                continue
            # The metadata keeps same_as among the options; the plan beside them.
            expected = dict(column["options"])
            if "same_as" in column:
                expected["same_as"] = column["same_as"]
            assert recorded.get("rule_options", {}) == expected, (where, column, recorded)
            assert recorded["rule_origin"] == column["origin"], (where, column, recorded)
            assert recorded.get("secret", False) == column.get("secret", False), (where, column, recorded)
    assert plan["key_source"] == meta["policy"]["key_source"] == "SQLSNAP_HASH_KEY"
    users_plan = next(t for t in plan["tables"] if t["name"] == "users")
    users = {c["name"]: c for c in users_plan["columns"]}
    assert users["id"]["rule"] == "hash" and users["email"]["rule"] == "fake"
    assert users["password_hash"]["secret"] is True
    # What the comparison above covered: defaulted options, each kind of origin.
    incidents = {c["name"]: c for c in next(t for t in plan["tables"] if t["name"] == "incidents")["columns"]}
    assert (users["email"]["options"], users["email"]["origin"]) == ({"kind": "email"}, "--anonymize: email")
    policy = tmp_path / "p.toml"
    assert (users["token_type"]["rule"], users["token_type"]["origin"]) == ("keep", f"{policy}, line 5")
    assert users["password_hash"]["origin"] == "--include-secret"
    assert incidents["narrative"]["options"] == {"length": 3}
    assert (incidents["occurred_on"]["options"], incidents["occurred_on"]["origin"]) == (
        {"owner": "reported_by", "max_days": 10}, f"{policy}, line 4")
    assert (incidents["reported_by"]["same_as"], incidents["reported_by"]["origin"]) == (
        "users.id", "foreign key to users.id")
    assert "Warning: secret column users.password_hash is exported" in done.stderr
    text = runner.invoke(main, ["plan", any_url, *options])
    assert text.exit_code == 0 and "Tables left out: 1" in text.stdout, text.output
    assert re.search(r"hash +reported_by: hash \(as users.id\)", text.stdout)


# -- the example policy of docs/policy.md, on the demo database --------------------------------


def docs_example_policy() -> str:
    doc = (ROOT / "docs" / "policy.md").read_text()
    section = doc[doc.index("## Example: a policy for the bundled demo database"):]
    return section[section.index("```toml\n") + 8: section.index("```\n", section.index("```toml"))]


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The database of `sqlsnap demo --no-export` (scale 1), built once for this module."""
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    conn = sqlite3.connect(db)
    demo.build(conn, "sqlite", 1)
    conn.close()
    return db


def docs_sample_plan() -> str:
    doc = (ROOT / "docs" / "policy.md").read_text()
    section = doc[doc.index("## The plan"):]
    start = section.index("```\n") + 4
    return section[start:section.index("```\n", start)]


def test_docs_sample_plan_is_what_plan_prints(demo_db: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample of docs/policy.md is a real run: its lines, between the `...` that mark what
    it leaves out, are the output's lines in order, with <hostname> for the machine's name."""
    (tmp_path / "sqlsnap.toml").write_text(docs_example_policy())
    monkeypatch.chdir(tmp_path)
    shown = CliRunner(env={HASH_KEY_ENV: KEY}).invoke(main, ["plan", f"sqlite:///{demo_db}"])
    assert shown.exit_code == 0, shown.output
    real = shown.stdout.splitlines()
    real[0] = real[0].replace(f" on {socket.gethostname()} (", " on <hostname> (", 1)
    chunks: list[list[str]] = [[]]
    for line in docs_sample_plan().splitlines():
        if line.strip() == "...":
            chunks.append([])
        else:
            chunks[-1].append(line)
    at = 0
    for i, chunk in enumerate(chunks):
        found = next((k for k in range(at, len(real) - len(chunk) + 1) if real[k:k + len(chunk)] == chunk),
                     None)
        assert found is not None and (found == 0 or i > 0), (
            "docs/policy.md's sample plan is stale: these lines are not in the output of a real run, in "
            "this order; run it again (see below the sample):\n" + "\n".join(chunk))
        at = found + len(chunk)
    assert not chunks[-1] or at == len(real), "the sample plan ends before the output does: end it with ..."


def test_docs_example_policy_anonymizes_the_demo_database(demo_db: Path, tmp_path: Path) -> None:
    db = demo_db
    people = sqlite3.connect(db).execute("SELECT full_name, email, phone FROM users").fetchall()
    (tmp_path / "sqlsnap.toml").write_text(docs_example_policy())
    url = f"sqlite:///{db}"
    runner = CliRunner(env={HASH_KEY_ENV: KEY})
    shown = runner.invoke(main, ["plan", url, "--policy", str(tmp_path / "sqlsnap.toml"), "--json"])
    assert shown.exit_code == 0, shown.output
    notices = json.loads(shown.stdout)["notices"]
    assert not [n for n in notices if n["code"] in ("personal-data", "secret-included", "join", "shift-dates",
                                                    "unmatched-pattern")], notices
    out = tmp_path / "demo.json"
    done = runner.invoke(main, ["export", url, "--policy", str(tmp_path / "sqlsnap.toml"), "-o", str(out),
                                "-q"])
    assert done.exit_code == 0, done.output
    data = out.read_bytes()
    for full_name, email, phone in people:
        assert full_name.encode() not in data, full_name
        assert email.encode() not in data, email
        if phone:
            assert phone.encode() not in data, phone
    doc = json.loads(data)
    ids = {u["id"] for u in doc["data"]["users"]}
    for name, rows in doc["data"].items():
        for fk in doc["metadata"]["tables"][name]["foreign_keys"]:
            if fk["references"] == {"table": "users", "columns": ["id"]}:
                (column,) = fk["columns"]
                assert all(r[column] in ids for r in rows if r[column] is not None), (name, column)
    assert doc["data"]["ai_request_logs"][0]["total_tokens"] > 0


def test_fake_kind_and_mask_style_come_from_the_name_when_not_given() -> None:
    plan = plan_of('[rules]\n"accounts.name" = "fake"\n"users.full_name" = "fake"\n"users.phone" = "mask"\n'
                   '"users.email" = "mask"\n', key_source="test")
    accounts = {c.name: dict(c.options) for c in plan.table("accounts").columns}
    users = {c.name: dict(c.options) for c in plan.table("users").columns}
    assert accounts["name"] == {"kind": "company"}
    assert users["full_name"] == {"kind": "name"}
    assert users["phone"] == {"as": "phone", "keep": 4}
    assert users["email"] == {"as": "email"}
    with pytest.raises(UsageError, match=r"p.toml, line 2: cannot tell which fake values users.notes"):
        plan_of('[rules]\n"users.notes" = "fake"\n', key_source="test")


@pytest.mark.parametrize(("table_name", "column", "family", "expected"), [
    ("users", "email", "text", "fake"), ("users", "contactEmail", "text", "fake"),
    ("users", "email_verified", "bool", None), ("users", "email_template", "text", None),
    ("users", "last_login_ip", "text", "mask"), ("users", "seen_from", "inet", "mask"),
    ("users", "ip_country", "text", None), ("users", "date_of_birth", "date", "generalize"),
    ("users", "place_of_birth", "text", None), ("users", "phone_number", "text", "mask"),
    ("users", "name", "text", "fake"), ("companies", "name", "text", None),
    ("orders", "customer_name", "text", "fake"), ("users", "first_name", "text", "fake"),
    ("users", "surname", "text", "fake"), ("users", "username", "text", "fake"),
    ("users", "home_address", "text", "fake"), ("devices", "mac_address", "text", None),
    ("users", "ssn", "text", "redact"), ("users", "postal_code", "text", "truncate"),
    ("tickets", "internal_notes", "text", "mask"), ("incidents", "narrative", "text", None),
    ("users", "id", "int", None), ("users", "role", "text", None),
])
def test_the_preset_recognizes_personal_data_by_name_and_type(table_name: str, column: str, family: str,
                                                              expected: str | None) -> None:
    from sqlsnap.policy import TypeInfo, pii_rule

    found = pii_rule(table_name, column, TypeInfo(family))
    assert (found.rule if found else None) == expected
