"""Policy files and anonymization rules: parsing with line numbers, errors that fail before
any data is read, every rule's transform, determinism under a key, joins that survive
hashing, and the PostgreSQL server path writing the same bytes as the portable one."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import sqlsnap
from sqlsnap.cli import main
from sqlsnap.errors import NotFoundError, UsageError
from sqlsnap.policy import HASH_KEY_ENV, TypeInfo, parse_policy, resolve_key
from sqlsnap.policy.transforms import (
    Keys,
    build_transform,
    fake,
    generalize,
    hash_int,
    mask,
    shift_dates,
    truncate,
)
from tests.conftest import execute_script

KEY_A = "key-A-0123456789abcdef"
KEY_B = "key-B-0123456789abcdef"


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HASH_KEY_ENV, raising=False)


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- parsing: every error names the file, the line and the fix --------------------------------


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ('[rules]\n"users.email" = "hsah"\n', 2, "unknown rule 'hsah' for 'users.email'; did you mean 'hash'?"),
    ('[rules]\n\n"users.dob" = "shift_dates"\n', 3, "did you mean 'shift-dates'?"),
    ('[rules]\n"users.[abc" = "null"\n', 2,
     "'[' at position 7 is never closed; close it ('[0-9]') or remove it"),
    ('[rules]\n"email" = "null"\n', 2, "'email' is not TABLE.COLUMN; write e.g. 'users.email' or '*.email'"),
    ('[rules]\n"t.c" = { rule = "truncate" }\n', 2, "rule 'truncate' needs option 'length'"),
    ('[rules]\n"t.c" = { rule = "truncate", lenght = 3 }\n', 2,
     "has no option 'lenght'; did you mean 'length'?"),
    ('[rules]\n"t.c" = { rule = "fake", kind = "pet" }\n', 2, "kind = 'pet' is not one of: name, first_name"),
    ('[rules]\n"t.c" = { rule = "mask", keep = "4" }\n', 2,
     "option 'keep' of rule 'mask' must be a whole number"),
    ('anonymise = true\n', 1, "unknown setting 'anonymise'; did you mean 'anonymize'?"),
    ('exclude_tables = ["debug_["]\n', 1, "malformed pattern 'debug_['"),
    ('include_secrets = ["sessions.*"]\n', 1, "secrets are exported only when named exactly"),
    ('\n\n[rules.users]\nemail = "hashh"\n', 4, "unknown rule 'hashh' for 'users.email'"),
    ('[rules]\nusers.email = 3\n', 2, "must be a rule name"),
    ('[rules.users]\nemail = {length = 3}\n', 2, "the rule for 'users.email' has options (length) but no "
     "'rule' key; write \"users.email\" = { rule = \"truncate\", length = 3 }"),
    ('[rules]\n\n"users.name" = { kind = "name" }\n', 3, "no 'rule' key; write \"users.name\" = "
     "{ rule = \"fake\", kind = \"name\" }"),
    ('[rules]\n"sessions.created_at" = "null"\n[rules.sessions.started_at]\nowner = "user_id"\n'
     'max_days = 30\n', 3,
     "no 'rule' key; write \"sessions.started_at\" = { rule = \"shift-dates\", owner = \"user_id\", "
     "max_days = 30 }"),
])
def test_policy_errors_name_the_line_and_the_fix(text: str, line: int, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_policy(text, "sqlsnap.toml")
    message = str(info.value)
    assert message.startswith(f"sqlsnap.toml, line {line}: "), message
    assert fragment in message, message


def test_columns_named_like_options_are_still_rules() -> None:
    """A table without `rule` is a table of rules unless an option in it holds no rule name."""
    policy = parse_policy('[rules.users]\nkind = "hash"\nlength = { rule = "null" }\n', "p.toml")
    assert [(r.pattern.text, r.rule) for r in policy.rules] == [("users.kind", "hash"),
                                                                ("users.length", "null")]


def test_invalid_toml_reports_the_parsers_position() -> None:
    with pytest.raises(UsageError, match=r"sqlsnap.toml: not valid TOML: .*line 2"):
        parse_policy('[rules]\n"users.email" = fake\n', "sqlsnap.toml")


def test_rule_forms_and_precedence_fields() -> None:
    policy = parse_policy(
        'anonymize = true\n'
        'exclude_tables = ["debug_*"]\n'
        '[rules]\n'
        '"users.email" = "fake"\n'
        '"*.notes" = { rule = "truncate", length = 10 }\n'
        'audit.events.ip = "mask"\n'
        '[rules.sessions]\n'
        'created_at = { rule = "shift-dates", owner = "user_id", max_days = 30 }\n',
        "p.toml")
    assert policy.anonymize
    assert [(r.pattern.table, r.pattern.column, r.rule, dict(r.options), r.where) for r in policy.rules] == [
        ("users", "email", "fake", {}, "p.toml, line 4"),
        ("*", "notes", "truncate", {"length": 10}, "p.toml, line 5"),
        ("audit.events", "ip", "mask", {}, "p.toml, line 6"),
        ("sessions", "created_at", "shift-dates", {"owner": "user_id", "max_days": 30}, "p.toml, line 8"),
    ]
    assert policy.exclude_tables[0].where == "p.toml, line 2"


def test_missing_key_fails_before_connecting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HASH_KEY_ENV, raising=False)
    policy = write(tmp_path, '[rules]\n"users.email" = "fake"\n"users.id" = "hash"\n')
    # The database does not exist: only a check made before connecting can give this error.
    with pytest.raises(UsageError) as info:
        sqlsnap.export("postgresql://nobody@127.0.0.1:1/nowhere", str(tmp_path / "x.json"), policy=policy)
    message = str(info.value)
    assert message.startswith(f"{policy}, line 2: rule 'fake' for 'users.email' needs a hash key; ")
    assert "SQLSNAP_HASH_KEY" in message and "--hash-key-file" in message
    assert not (tmp_path / "x.json").exists()


def test_short_or_unreadable_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least 16"):
        resolve_key(environ={HASH_KEY_ENV: "short"})
    with pytest.raises(UsageError, match="cannot read the hash key file"):
        resolve_key(hash_key_file=str(tmp_path / "missing.key"), environ={})
    (tmp_path / "k").write_text("a-long-enough-key-from-a-file\n")
    key = resolve_key(hash_key_file=str(tmp_path / "k"), environ={HASH_KEY_ENV: KEY_A})
    assert key is not None and key.secret == b"a-long-enough-key-from-a-file"
    assert "a-long" not in repr(key)
    policy = parse_policy('hash_key_file = "k"\n', "p.toml", folder=str(tmp_path))
    key = resolve_key(policy=policy, environ={})
    assert key is not None and key.source.startswith(f"key file {tmp_path / 'k'} (p.toml, line 1)")


# -- errors that need the catalog still come before any row ------------------------------------


USERS = [
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(100), password_hash VARCHAR(100), n INTEGER)",
    "INSERT INTO users VALUES (1, 'a@b.test', 'x', 5)",
]


@pytest.mark.parametrize(("rules", "error", "fragment"), [
    ('"users.emial" = "fake"', NotFoundError,
     "line 2: 'users.emial': table users has no column 'emial'; did you mean 'email'? "
     "its columns are: id, email"),
    ('"user.email" = "fake"', NotFoundError, "there is no table 'user'; did you mean 'users'?"),
    ('"users.password_hash" = "hash"', UsageError,
     "users.password_hash is a secret column (built-in deny-list: *passwordhash) and is never exported; "
     "to export it, add it to include_secrets or give --include-secret users.password_hash"),
    ('"users.n" = "mask"', UsageError, "rule 'mask' does not apply to users.n, a column of type INTEGER; "
                                       "rules for it are: keep, drop, null, hash"),
    ('"users.email" = { rule = "shift-dates", owner = "uid" }', NotFoundError,
     "owner 'uid' is not a column of users; did you mean 'id'?"),
])
def test_catalog_errors_name_the_line(sqlite_url: str, tmp_path: Path, rules: str, error: type,
                                      fragment: str) -> None:
    execute_script(sqlite_url, USERS)
    policy = write(tmp_path, f"[rules]\n{rules}\n")
    out = tmp_path / "x.json"
    with pytest.raises(error) as info:
        sqlsnap.export(sqlite_url, str(out), policy=policy, hash_key=KEY_A)
    assert fragment in str(info.value)
    assert not out.exists()
    result = CliRunner().invoke(main, ["plan", sqlite_url, "--policy", policy, "--hash-key-file", policy])
    assert result.exit_code == error.exit_code
    assert result.stderr.startswith(f"Error: {policy}, line 2: ")


def test_cli_finds_sqlsnap_toml_in_the_current_folder(sqlite_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    execute_script(sqlite_url, USERS)
    monkeypatch.chdir(tmp_path)
    write(tmp_path, '[rules]\n"users.email" = { rule = "mask", as = "email" }\n', "sqlsnap.toml")
    result = CliRunner().invoke(main, ["export", sqlite_url, "-o", "out.json", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out.json").read_bytes())["data"]["users"][0]["email"] == "a***@b.test"
    result = CliRunner().invoke(main, ["export", sqlite_url, "-o", "out2.json", "-q", "--no-policy"])
    assert json.loads((tmp_path / "out2.json").read_bytes())["data"]["users"][0]["email"] == "a@b.test"


# -- transforms ------------------------------------------------------------------------------


def test_mask_styles() -> None:
    assert mask("email", None)("ana.lima@corp.example") == "a***@corp.example"
    assert mask("phone", 4)("+44 (20) 7946-0958") == "+** (**) ****-0958"
    assert mask("phone", 2)("555-0100") == "***-**00"
    assert mask("ip", None)("198.51.100.23") == "198.51.100.0"
    assert mask("ip", None)("2001:db8:abcd:12:1::7") == "2001:db8:abcd::"
    assert mask("ip", None)("10.1.2.3/16") == "10.1.2.0/16"
    assert mask("text", None)("Line one\nline two") == "*" * 17
    assert mask("text", None)(None) is None


def test_generalize_and_truncate() -> None:
    assert generalize("year")("1987-06-05") == "1987-01-01"
    assert generalize("month")("1987-06-05") == "1987-06-01"
    assert generalize("year")("1987-06-05T13:14:15.5Z") == "1987-01-01T00:00:00.0Z"
    assert generalize("year")("1987-06-05 13:14:15") == "1987-01-01 00:00:00"
    assert generalize("year")("0000-00-00") == "0000-01-01"
    assert generalize("year")(None) is None
    assert truncate(3)("abcdef") == "abc" and truncate(3)(None) is None


def test_hash_of_integers_is_a_permutation_that_fits_the_column() -> None:
    keys = Keys(KEY_A.encode())
    permute = hash_int(keys, 8, False)  # a signed 8-bit column: values -128..127
    outputs = [permute(v) for v in range(-128, 128)]
    assert sorted(outputs) == list(range(-128, 128))  # a bijection: no two keys collide
    assert all(permute(v) >= 0 for v in range(128))  # non-negative stays non-negative
    assert outputs != list(range(-128, 128))
    wide = hash_int(keys, 32, False)
    values = [wide(v) for v in range(1, 5001)]
    assert len(set(values)) == 5000 and all(0 <= v < 2**31 for v in values)
    assert hash_int(Keys(KEY_B.encode()), 32, False)(1) != wide(1)


def test_hashed_ids_stay_exact_in_json_readers_that_use_doubles(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashed bigint (and SQLite integer) ids below 2**53 stay below it: a double holds them
    exactly, so jq 1.6 or JavaScript read them unchanged. Before, they spread over 63 bits."""
    from sqlsnap.policy import transforms

    execute_script(sqlite_url, ["CREATE TABLE t (id INTEGER PRIMARY KEY, parent INTEGER, big INTEGER)"]
                   + [f"INSERT INTO t VALUES ({i}, {i // 2}, {2**60 + i})" for i in range(1, 2001)])
    policy = write(tmp_path, '[rules]\n"t.id" = "hash"\n"t.parent" = "hash"\n"t.big" = "hash"\n')
    out = tmp_path / "x.json"
    sqlsnap.export(sqlite_url, str(out), policy=policy, hash_key=KEY_A)
    rows = json.loads(out.read_bytes())["data"]["t"]
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == 2000 and all(0 <= v < 2**53 and int(float(v)) == v for v in ids)
    assert {r["parent"] for r in rows[1:]} <= set(ids)  # still joins (row 1: parent 0, no row)
    assert all(2**53 <= r["big"] < 2**63 for r in rows)  # ids above 2**53 stay above it

    # The same construction at a small width, checked whole: a permutation of the column's
    # range (no two values collide) that keeps [-2**4, 2**4) in itself.
    monkeypatch.setattr(transforms, "SAFE_BITS", 4)
    permute = hash_int(Keys(KEY_A.encode()), 8, False)
    outputs = [permute(v) for v in range(-128, 128)]
    assert sorted(outputs) == list(range(-128, 128))
    assert sorted(permute(v) for v in range(-16, 16)) == list(range(-16, 16))
    assert outputs[128:144] != list(range(16))


def test_hash_text_and_uuid_shapes() -> None:
    keys = Keys(KEY_A.encode())
    text = build_transform("hash", {}, TypeInfo("text"), keys)
    assert len(text("ana@example.com")) == 32 and text("ana@example.com") == text("ana@example.com")
    short = build_transform("hash", {}, TypeInfo("text", length=12), keys)
    assert len(short("ana@example.com")) == 12
    uid = build_transform("hash", {}, TypeInfo("uuid"), keys)("0b6f8f3e-4b1e-4d7e-9a51-0d6b4b1e2f3a")
    assert len(uid) == 36 and uid[14] == "8" and uid[19] in "89ab"


def test_fake_values_are_deterministic_per_key_and_realistic() -> None:
    a, b = Keys(KEY_A.encode()), Keys(KEY_B.encode())
    emails = fake(a, "email")
    assert emails("ana@corp.test") == emails("ana@corp.test")
    assert emails("ana@corp.test") != fake(b, "email")("ana@corp.test")
    assert emails("ana@corp.test").split("@")[1].endswith(("example", "example.com", "example.net",
                                                            "example.org"))
    assert len(fake(a, "name")("Ana Lima").split()) == 2
    assert fake(a, "phone")("+351 912 345 678").startswith("+1-")
    assert "555-01" in fake(a, "phone")("x")
    names = {fake(a, "name")(f"person {i}") for i in range(2000)}
    assert len(names) > 1500  # varied enough to look like a population


def test_shift_dates_moves_every_date_of_an_owner_by_the_same_days() -> None:
    shift = shift_dates(Keys(KEY_A.encode()), 30, "users.id")
    moved = [shift(d, 42) for d in ("2024-01-10", "2024-03-05T10:00:00Z", "2024-03-06 08:00:00")]
    deltas = {(date.fromisoformat(m[:10]) - date.fromisoformat(o[:10])).days
              for m, o in zip(moved, ("2024-01-10", "2024-03-05", "2024-03-06"))}
    assert len(deltas) == 1 and 0 < abs(deltas.pop()) <= 30
    assert moved[1].endswith("T10:00:00Z") and moved[2].endswith(" 08:00:00")
    assert shift("infinity", 42) == "infinity" and shift(None, 42) is None


# -- determinism and joins, on every dialect -------------------------------------------------


def join_schema(url: str) -> list[str]:
    ts = "TIMESTAMP" if url.startswith("postgresql") else "DATETIME"
    users = [(1, None, "ana@corp.test", "Ana Lima", "2024-01-10 09:00:00"),
             (2, 1, "bo@corp.test", "Bo Berg", "2024-02-11 10:30:00"),
             (3, 1, "cy@corp.test", "Cy Chen", "2024-03-12 11:45:00")]
    sessions = [(i, 1 + i % 3, f"2024-0{1 + i % 9}-1{i % 10} 08:00:00", f"session note {i}")
                for i in range(1, 31)]
    return [
        "CREATE TABLE users (id INTEGER PRIMARY KEY, manager_id INTEGER, "
        f"email VARCHAR(100) NOT NULL UNIQUE, full_name VARCHAR(100), created_at {ts}, "
        "FOREIGN KEY (manager_id) REFERENCES users (id))",
        f"CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, created_at {ts}, "
        "note VARCHAR(100), FOREIGN KEY (user_id) REFERENCES users (id))",
        "CREATE TABLE invites (id INTEGER PRIMARY KEY, inviter_email VARCHAR(100) NOT NULL, "
        "FOREIGN KEY (inviter_email) REFERENCES users (email))",
        *(f"INSERT INTO users VALUES ({i}, {'NULL' if m is None else m}, '{e}', '{n}', '{c}')"
          for i, m, e, n, c in users),
        *(f"INSERT INTO sessions VALUES ({i}, {u}, '{c}', '{n}')" for i, u, c, n in sessions),
        "INSERT INTO invites VALUES (1, 'bo@corp.test'), (2, 'cy@corp.test')",
    ]


JOIN_POLICY = """
[rules]
"users.id" = "hash"
"users.email" = "fake"
"users.full_name" = "fake"
"users.created_at" = "shift-dates"
"sessions.created_at" = { rule = "shift-dates", owner = "user_id" }
"sessions.note" = { rule = "truncate", length = 7 }
"""


def export_with(url: str, path: Path, policy: str, key: str) -> tuple[bytes, Any]:
    sqlsnap.export(url, str(path), policy=policy, hash_key=key)
    raw = path.read_bytes()
    return raw[raw.index(b'"data"'):], json.loads(raw)


def test_same_key_same_values_other_key_other_values_and_joins_hold(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, join_schema(any_url))
    policy = write(tmp_path, JOIN_POLICY)
    data_a1, doc = export_with(any_url, tmp_path / "a1.json", policy, KEY_A)
    data_a2, _ = export_with(any_url, tmp_path / "a2.json", policy, KEY_A)
    data_b, doc_b = export_with(any_url, tmp_path / "b.json", policy, KEY_B)
    assert data_a1 == data_a2
    users, users_b = doc["data"]["users"], doc_b["data"]["users"]
    for column in ("id", "email", "full_name"):
        assert [u[column] for u in users] != [u[column] for u in users_b], column
    assert {u["email"] for u in users}.isdisjoint({"ana@corp.test", "bo@corp.test", "cy@corp.test"})
    ids = {u["id"] for u in users}
    assert ids.isdisjoint({1, 2, 3}) and all(isinstance(i, int) for i in ids)
    if not any_url.startswith("sqlite"):
        assert all(0 <= i < 2**31 for i in ids)  # INTEGER is 32 bits there: hashed keys still fit
    # Every foreign key value has its parent, through hashed ids and faked emails alike.
    assert all(s["user_id"] in ids for s in doc["data"]["sessions"])
    assert all(u["manager_id"] in ids for u in users if u["manager_id"] is not None)
    emails = {u["email"] for u in users}
    assert all(i["inviter_email"] in emails for i in doc["data"]["invites"])
    meta = doc["metadata"]["tables"]
    rules = {c["name"]: (c.get("rule"), c.get("rule_options", {}).get("same_as"))
             for c in meta["sessions"]["columns"]}
    assert rules["user_id"] == ("hash", "users.id")
    assert {c["name"]: c.get("rule") for c in meta["invites"]["columns"]}["inviter_email"] == "fake"
    # shift-dates: the sessions of a user move by that user's own offset.
    originals = {1: "2024-01-10", 2: "2024-02-11", 3: "2024-03-12"}
    by_new_id = {}
    for original_id, user in zip((1, 2, 3), users):
        offset = date.fromisoformat(user["created_at"][:10]) - date.fromisoformat(originals[original_id])
        assert offset.days != 0 and abs(offset.days) <= 90
        by_new_id[user["id"]] = offset
    for n, s in enumerate(doc["data"]["sessions"], 1):
        original = date.fromisoformat(f"2024-0{1 + n % 9}-1{n % 10}")
        assert date.fromisoformat(s["created_at"][:10]) - original == by_new_id[s["user_id"]]
        assert s["note"] == f"session note {n}"[:7]


def test_keys_and_values_never_appear_in_the_output(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, join_schema(any_url))
    policy = write(tmp_path, JOIN_POLICY)
    raw = (tmp_path / "x.json")
    sqlsnap.export(any_url, str(raw), policy=policy, hash_key=KEY_A)
    data = raw.read_bytes()
    assert KEY_A.encode() not in data
    assert b"corp.test" not in data and b"Ana Lima" not in data
    meta = json.loads(data)["metadata"]["policy"]
    assert meta["key_source"] == "the hash_key argument" and meta["file"] == policy


# -- PostgreSQL: the server path splices transformed values into the same bytes -----------------


PG_TYPES = [
    """CREATE TABLE people (id bigint PRIMARY KEY, small smallint, n numeric(10,2), f float8, name text,
       code char(5), email varchar(100), born date, seen timestamptz, at timestamp, ip inet, doc jsonb,
       raw bytea, uid uuid, flag boolean, nums int[], plain text, "we""ird" text)""",
    """CREATE TABLE visits (id int PRIMARY KEY, person_id bigint REFERENCES people (id), note text,
       at timestamptz, tags text[])""",
    """INSERT INTO people VALUES
       (1, 7, 12.50, 'NaN', 'Ana "Quote" Lima', 'ab', 'ana@x.test', '1980-02-03', '2024-01-02 03:04:05.6+02',
        '2024-05-06 07:08:09', '192.0.2.10', '{"b": [1, 2.50], "a": "\\u00e9"}', '\\x00ff',
        '0b6f8f3e-4b1e-4d7e-9a51-0d6b4b1e2f3a', true, '{1,2,NULL}', E'back\\\\slash\\nnew line', 'w'),
       (2, NULL, NULL, 1.5e300, NULL, NULL, NULL, NULL, 'infinity', NULL, NULL, 'null', NULL, NULL, NULL,
        NULL, '', NULL),
       (3, -5, -0.01, -0.0, 'Bo', 'xyz  ', 'no-at-sign', '2000-12-31', '1999-12-31 23:59:59Z',
        '1999-12-31 23:59:59.999999', '2001:db8::1', '[]', '\\x', '00000000-0000-0000-0000-000000000000',
        false, '{}', 'plain', 'x')""",
    """INSERT INTO visits VALUES (10, 1, 'first', '2024-02-02 00:00:00Z', '{a,"b c"}'),
       (11, 1, NULL, NULL, NULL), (12, 3, 'third', '2024-03-03 12:00:00Z', '{}'),
       (13, NULL, 'x', NULL, '{}')""",
]

PG_POLICY = """
[rules]
"people.id" = "hash"
"people.small" = "hash"
"people.n" = "hash"
"people.f" = "hash"
"people.name" = { rule = "fake", kind = "name" }
"people.code" = { rule = "truncate", length = 2 }
"people.email" = "mask"
"people.born" = "generalize"
"people.seen" = "shift-dates"
"people.at" = "shift-dates"
"people.ip" = "mask"
"people.doc" = "hash"
"people.raw" = "hash"
"people.uid" = "hash"
"people.flag" = "null"
"visits.note" = "redact"
"visits.at" = { rule = "shift-dates", owner = "person_id" }
"visits.tags" = "hash"
"""


@pytest.mark.parametrize("layout", ["json", "jsonl"])
def test_postgresql_server_and_portable_paths_write_the_same_bytes(pg_url: str, tmp_path: Path,
                                                                   layout: str) -> None:
    execute_script(pg_url, PG_TYPES)
    policy = write(tmp_path, PG_POLICY)
    outputs = []
    for server_json in (True, False):
        out = tmp_path / f"{server_json}.{layout}"
        sqlsnap.export(pg_url, str(out), format=layout, policy=policy, hash_key=KEY_A,
                       server_json=server_json)
        if layout == "jsonl":
            outputs.append({p.name: p.read_bytes() for p in out.iterdir() if p.name != "metadata.json"})
        else:
            raw = out.read_bytes()
            outputs.append(raw[raw.index(b'"data"'):])
    assert outputs[0] == outputs[1]
    doc = json.loads((tmp_path / "True.json").read_bytes()) if layout == "json" else None
    if doc is not None:
        people = doc["data"]["people"]
        assert people[0]["flag"] is None and people[0]["code"] == "ab"
        assert people[0]["email"] == "a***@x.test" and people[0]["born"] == "1980-01-01"
        assert people[0]["ip"] == "192.0.2.0" and people[0]["plain"] == "back\\slash\nnew line"
        assert people[1]["seen"] == "infinity"
        assert doc["data"]["visits"][0]["note"] == "[REDACTED]"
        assert {v["person_id"] for v in doc["data"]["visits"]} - {None} <= {p["id"] for p in people}


def test_postgresql_server_path_really_splices(pg_url: str) -> None:
    """The projected COPY is the one that runs: arrays fall back to Python, the rest does not."""
    from sqlsnap.plan import build_plan, plan_options
    from sqlsnap.policy.transforms import compile_projections
    from sqlsnap.sources import make_source
    from sqlsnap.sources.postgresql import _projected_copy, _server_can_project
    from sqlsnap.urls import parse_url

    execute_script(pg_url, PG_TYPES)
    policy = parse_policy(PG_POLICY, "p.toml")
    options, key = plan_options(dialect="postgresql", policy=policy, hash_key=KEY_A)
    with make_source(parse_url(pg_url)) as src:
        tables = {t.name: t for t in src.list_tables(None)}
    plans = {name: src.details[name]["plans"] for name in tables}  # the source's own read details
    projections = compile_projections(build_plan(list(tables.values()), options), tables, key, "postgresql")
    assert _server_can_project(plans["people"], projections["people"])
    assert not _server_can_project(plans["visits"], projections["visits"])  # tags is an array
    sql, splice = _projected_copy(tables["people"], plans["people"], projections["people"], "people")
    assert splice is not None and "LATERAL" in sql and '"flag"' in sql and "NULL::text" in sql
