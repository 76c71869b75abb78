"""Segments (docs/segments.md): ``--where`` parsed, never pasted; the closure under foreign
keys computed in the database, on every dialect, with one test body each: a tenant of the demo
database, and a schema made of the awkward cases (a self-referencing tree 10 levels deep, a
cycle of two tables, a composite key, nullable foreign keys, two paths to one table)."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

import sqlsnap
from sqlsnap import demo
from sqlsnap.cli import main
from sqlsnap.errors import UsageError
from sqlsnap.plan.filters import Condition, RowFilter
from sqlsnap.plan.request import ReadRequest
from sqlsnap.plan.where import parse_condition, parse_where
from sqlsnap.targets import connect_for_write

from .conftest import execute_script, pg_connect

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "metadata.schema.json"
TENANT = 2


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_bytes()))


def keys(doc: dict[str, Any], table: str) -> set[tuple[Any, ...]]:
    """The primary keys of ``table``'s rows in the snapshot."""
    pk = doc["metadata"]["tables"][table]["primary_key"]
    return {tuple(r[c] for c in pk) for r in doc["data"][table]}


# -- the parser ----------------------------------------------------------------------------------


def test_where_is_parsed_into_typed_conditions() -> None:
    assert parse_condition("companies.id = 42") == ("companies", Condition("id", "=", (42,)))
    assert parse_condition("audit.events.cost >= 1.50") == (
        "audit.events", Condition("cost", ">=", (Decimal("1.50"),)))
    assert parse_condition("t.status IN ('open', 'it''s')") == (
        "t", Condition("status", "in", ("open", "it's")))
    assert parse_condition("t.n between -1 and 2e3") == ("t", Condition("n", "between", (-1, Decimal("2e3"))))
    assert parse_condition('"My Table"."a col" is not null') == (
        "My Table", Condition("a col", "is not null"))
    assert parse_condition("t.flag <> true") == ("t", Condition("flag", "!=", (True,)))
    assert parse_where(["t.a = 1", "t.b is null", "u.c = 'x'"]) == {
        "t": RowFilter.of(("a", "=", 1), ("b", "is null")), "u": RowFilter.of(("c", "=", "x"))}


@pytest.mark.parametrize("text, message", [
    ("companies.id = 42; DROP TABLE companies", r"cannot read --where .* at '; DROP TAB'"),
    ("companies.id = 1 OR 1 = 1", r"expected the end, found 'OR'"),
    ("companies.id = 1 --", r"at '--'"),
    ("companies.id = (SELECT 1)", r"expected a value"),
    ("companies.id like 'a%'", r"expected an operator"),
    ("id = 42", r"names no table"),
    ("companies.id = null", r"'is null' or 'is not null'"),
    ("companies.id in ()", r"expected a value"),
    ("companies.id = 1/*", r"at '/\*'"),
])
def test_where_refuses_what_is_not_a_condition(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_condition(text)


# -- the awkward schema ----------------------------------------------------------------------------

def make_shapes(url: str) -> None:
    """tenants 1 and 2; nodes: tenant 1 a chain 1 <- 2 <- ... <- 10 (10 levels), tenant 2 a
    chain 11 <- 12 <- 13; orders keyed (tenant_id, id); lines reference orders by both
    columns, and notes, which reference lines back (a cycle; nullable both ways); reviews
    reference a node and an order (two paths to one table); tags are a lookup."""
    sqlite = url.startswith("sqlite")
    statements = [
        "CREATE TABLE tenants (id integer PRIMARY KEY, name varchar(50))",
        "CREATE TABLE nodes (id integer PRIMARY KEY, tenant_id integer NOT NULL REFERENCES tenants(id), "
        "parent_id integer REFERENCES nodes(id), FOREIGN KEY (tenant_id) REFERENCES tenants(id), "
        "FOREIGN KEY (parent_id) REFERENCES nodes(id))",
        "CREATE TABLE tags (id integer PRIMARY KEY, label varchar(20))",
        "CREATE TABLE node_tags (node_id integer NOT NULL, tag_id integer NOT NULL, "
        "PRIMARY KEY (node_id, tag_id), FOREIGN KEY (node_id) REFERENCES nodes(id), "
        "FOREIGN KEY (tag_id) REFERENCES tags(id))",
        "CREATE TABLE orders (tenant_id integer NOT NULL, id integer NOT NULL, buyer_node integer, "
        "PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id) REFERENCES tenants(id), "
        "FOREIGN KEY (buyer_node) REFERENCES nodes(id))",
        "CREATE TABLE order_lines (id integer PRIMARY KEY, tenant_id integer NOT NULL, "
        "order_id integer NOT NULL, note_id integer, "
        "FOREIGN KEY (tenant_id, order_id) REFERENCES orders(tenant_id, id)"
        + (", FOREIGN KEY (note_id) REFERENCES notes(id))" if sqlite else ")"),
        "CREATE TABLE notes (id integer PRIMARY KEY, tenant_id integer NOT NULL, line_id integer, "
        "FOREIGN KEY (tenant_id) REFERENCES tenants(id), FOREIGN KEY (line_id) REFERENCES order_lines(id))",
        "CREATE TABLE reviews (id integer PRIMARY KEY, node_id integer NOT NULL, order_tenant integer, "
        "order_id integer, FOREIGN KEY (node_id) REFERENCES nodes(id), "
        "FOREIGN KEY (order_tenant, order_id) REFERENCES orders(tenant_id, id))",
    ]
    if not sqlite:
        statements.append("ALTER TABLE order_lines ADD FOREIGN KEY (note_id) REFERENCES notes(id)")
    statements += [
        "INSERT INTO tenants VALUES (1, 'one'), (2, 'two')",
        "INSERT INTO nodes VALUES (1, 1, NULL)",
        *[f"INSERT INTO nodes VALUES ({i}, 1, {i - 1})" for i in range(2, 11)],
        "INSERT INTO nodes VALUES (11, 2, NULL), (12, 2, 11), (13, 2, 12)",
        "INSERT INTO tags VALUES (1, 'x'), (2, 'y')",
        "INSERT INTO node_tags VALUES (10, 1), (12, 2)",
        "INSERT INTO orders VALUES (1, 1, 10), (1, 2, NULL), (2, 1, 12)",
        "INSERT INTO order_lines VALUES (1, 1, 1, NULL), (2, 1, 2, NULL), (3, 2, 1, NULL)",
        "INSERT INTO notes VALUES (1, 1, 1), (2, 2, 3)",
        "UPDATE order_lines SET note_id = 1 WHERE id = 1",
        "INSERT INTO reviews VALUES (1, 5, 2, 1), (2, 13, NULL, NULL)",
    ]
    execute_script(url, statements)


def test_closure_of_a_tenant_follows_every_shape(any_url: str, tmp_path: Path) -> None:
    make_shapes(any_url)
    out = tmp_path / "t1.json"
    sqlsnap.export(any_url, str(out), where=parse_where(["tenants.id = 1"]), closure=True)
    doc = load(out)
    got = {t: keys(doc, t) for t in doc["data"]}
    assert got == {
        "tenants": {(1,), (2,)},  # 2 only as the parent of order (2, 1), which review 1 references
        "nodes": {(i,) for i in range(1, 11)} | {(11,), (12,)},  # the 10 levels; 12 and 11 as parents
        "tags": {(1,)},  # a lookup row a tenant's row references; tag 2 is another tenant's
        "node_tags": {(10, 1)},  # not (12, 2): node 12 is there only as a parent
        "orders": {(1, 1), (1, 2), (2, 1)},
        "order_lines": {(1,), (2,)},  # not 3, a child of order (2, 1), which is there only as a parent
        "notes": {(1,)},
        "reviews": {(1,)},  # reached through nodes; its order is another tenant's
    }
    meta = doc["metadata"]
    seg = meta["segment"]
    assert meta["export_type"] == "segment" and seg["closed"] is True
    assert meta["filters"] == {"tenants": [{"column": "id", "op": "=", "values": [1]}]}
    assert seg["seeds"] == {"tenants": 1}
    cross = seg["cross_tenant_parents"]
    assert sorted(cross) == ["nodes", "orders", "tenants"]
    assert cross["orders"] == {"rows": 1, "keys": [[2, 1]]} and cross["tenants"] == {"rows": 1, "keys": [[2]]}
    assert cross["nodes"]["rows"] == 2 and sorted(cross["nodes"]["keys"]) == [[11], [12]]
    assert seg["reached_by"]["tenants"] == {"as": "seed", "edge": None}
    assert seg["reached_by"]["nodes"] == {"as": "child", "edge": "nodes.tenant_id -> tenants.id"}
    assert seg["reached_by"]["tags"] == {"as": "parent", "edge": "node_tags.tag_id -> tags.id"}
    assert {t: e["rows"] for t, e in meta["tables"].items()} == {t: len(k) for t, k in got.items()}
    result = sqlsnap.verify(str(out), integrity=True)
    assert result.ok, result
    jsonschema.validate(meta, json.loads(SCHEMA.read_text()))


def test_a_tree_ten_levels_deep_from_its_root(any_url: str, tmp_path: Path) -> None:
    make_shapes(any_url)
    out = tmp_path / "tree.json"
    sqlsnap.export(any_url, str(out), where=parse_where(["nodes.id = 1"]), closure=True)
    doc = load(out)
    assert {t: keys(doc, t) for t in doc["data"]} == {
        "nodes": {(i,) for i in range(1, 11)} | {(11,), (12,)},  # 9 descendants; 12 and 11 as parents
        "tenants": {(1,), (2,)},  # parents only: their other children (order (1, 2), node 13) stay out
        "tags": {(1,)},
        "node_tags": {(10, 1)},
        "orders": {(1, 1), (2, 1)},  # (1, 1) a child of node 10; (2, 1) the parent of review 1
        "order_lines": {(1,)},
        "notes": {(1,)},  # a child of line 1, which is a child of order (1, 1)
        "reviews": {(1,)},
    }
    assert sqlsnap.verify(str(out), integrity=True).ok


def test_without_closure_filters_stay_on_their_table(any_url: str, tmp_path: Path) -> None:
    make_shapes(any_url)
    out = tmp_path / "plain.json"
    sqlsnap.export(any_url, str(out), where=parse_where(["nodes.id <= 3"]))
    doc = load(out)
    assert keys(doc, "nodes") == {(1,), (2,), (3,)} and len(doc["data"]["reviews"]) == 2
    assert doc["metadata"]["segment"] == {"closed": False}


def test_plan_counts_rows_and_names_the_edges(any_url: str) -> None:
    make_shapes(any_url)
    p = sqlsnap.plan(any_url, where=parse_where(["tenants.id = 1"]), closure=True)
    assert p.segment is not None and p.segment.rows is not None
    assert p.segment.rows["nodes"] == 12 and p.segment.rows["order_lines"] == 2
    text = p.render()
    assert "  order_lines (2 of " in text
    assert "    reached    child via order_lines.note_id -> notes.id" in text  # first of its two paths
    assert "    reached    parent via node_tags.tag_id -> tags.id" in text
    assert "    ! parents  1 rows reached only as parents" in text
    assert p.to_json()["segment"]["seeds"] == {"tenants": 1}
    assert p.to_json()["segment"]["rows"]["order_lines"] == 2



def test_postgres_keeps_the_closure_in_a_temporary_table(pg_url: str, tmp_path: Path) -> None:
    """On a writable server the closure is computed once, into a temporary table made before the
    snapshot's read-only transaction, and every table is read from it in the table's own order;
    where no temporary table can be made (a standby, or a read-only default as here) each query
    computes it, with the same rows."""
    make_shapes(pg_url)
    # Nodes 1, 4 and 7 move to the end of the table: its order is no longer the keys'.
    execute_script(pg_url, ["UPDATE nodes SET tenant_id = tenant_id WHERE id IN (1, 4, 7)"])
    full = tmp_path / "full.json"
    sqlsnap.export(pg_url, str(full))
    stored = [r["id"] for r in load(full)["data"]["nodes"]]
    assert stored[-3:] == [1, 4, 7]
    made: list[int] = []

    def look(_plan: Any) -> None:  # after the closure was counted, before any row is read
        with pg_connect(pg_url) as conn:
            made.append(conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'sqlsnap_closure' "
                                     "AND relpersistence = 't'").fetchone()[0])

    where = parse_where(["tenants.id = 1"])
    kept, each = tmp_path / "kept.json", tmp_path / "each.json"
    sqlsnap.export(pg_url, str(kept), where=where, closure=True, on_plan=look)
    read_only = pg_url + "?options=-c%20default_transaction_read_only%3Don"
    sqlsnap.export(read_only, str(each), where=where, closure=True, on_plan=look)
    assert made == [1, 0]
    data = load(kept)["data"]
    assert [r["id"] for r in data["nodes"]] == [i for i in stored if i <= 12]  # the table's order
    assert data == load(each)["data"]
    assert load(kept)["metadata"]["segment"] == load(each)["metadata"]["segment"]
    assert sqlsnap.verify(str(kept), integrity=True).ok


def test_postgres_without_its_temporary_table_computes_the_closure_in_each_query(pg_url: str) -> None:
    """A temporary table made on one server session is not there when a pooler in transaction
    mode runs the snapshot on another: the closure is then computed in each query, the same."""
    from sqlsnap.sources.postgresql import PostgresSource
    from sqlsnap.urls import parse_url

    make_shapes(pg_url)
    plan = sqlsnap.plan(pg_url, where=parse_where(["tenants.id = 1"]), closure=True)
    assert plan.segment is not None
    source = PostgresSource(parse_url(pg_url), max_readers=1)
    source.open()
    try:
        tables = {t.name: t for t in source.list_tables(None)}
        segment = plan.segment
        # As if the table had been made: the source believes so, the server has none.
        source._closure_tables[source._conn] = None
        with source.reader() as reader:
            counts = reader.segment_counts(segment.closure)
            nodes = tables["nodes"]
            read = [json.loads(line)["id"] for chunk, _ in reader.read(
                ReadRequest(nodes, segment=segment.read("nodes")), threading.Event())
                for line in chunk.splitlines()]
        assert source._closure_tables == {}  # given up, not failed
    finally:
        source.close()
    assert counts is not None and counts[segment.closure.index("nodes")] == (12, 2)
    assert sorted(read) == list(range(1, 13))

# -- the demo: one tenant ----------------------------------------------------------------------------

#: Tables of the demo whose rows belong to a company through a column of their own.
OWNED = {"sites": "company_id", "users": "company_id", "incidents": "company_id",
         "ai_request_logs": "company_id", "debug_logs": "company_id"}


def test_a_tenant_of_the_demo_is_whole_closed_and_alone(any_url: str, tmp_path: Path) -> None:
    dialect = any_url.split(":", 1)[0]
    conn = connect_for_write(any_url)
    try:
        demo.build(conn, dialect, 1)
    finally:
        conn.close()
    full = tmp_path / "full.json"
    sqlsnap.export(any_url, str(full))
    everything = load(full)["data"]
    # Another company's user takes part in one of the tenant's incidents: a cross-tenant parent.
    incident = next(i for i in everything["incidents"] if i["company_id"] == TENANT)
    stranger = next(u for u in everything["users"] if u["company_id"] != TENANT)
    execute_script(any_url, [f"INSERT INTO participants (incident_id, user_id, role, added_at) VALUES "
                             f"({incident['id']}, {stranger['id']}, 'witness', '2026-01-01 00:00:00')"])
    out = tmp_path / "tenant.json"
    result = CliRunner().invoke(main, ["export", any_url, "--where", f"companies.id = {TENANT}",
                                       "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    doc = load(out)
    data, seg = doc["data"], doc["metadata"]["segment"]
    listed = {t: {tuple(k) for k in v["keys"]} for t, v in seg["cross_tenant_parents"].items()}
    for table, column in OWNED.items():
        mine = {r["id"] for r in everything[table] if r[column] == TENANT}
        got = {r["id"] for r in data[table]}
        assert mine <= got, f"{table}: rows of the tenant missing"
        others = {r["id"] for r in data[table] if r[column] != TENANT}
        assert {(i,) for i in others} <= listed.get(table, set()), f"{table}: unlisted rows of another tenant"
    assert {u["id"] for u in data["users"] if u["company_id"] != TENANT} == {stranger["id"]}
    assert {s["user_id"] for s in data["sessions"]} <= {u["id"] for u in data["users"]
                                                        if u["company_id"] == TENANT}  # not the stranger's
    incidents = {i["id"] for i in data["incidents"]}
    for child in ("participants", "incident_narratives", "clarification_questions", "incident_analyses",
                  "workflow_handoffs"):
        mine = [r for r in everything[child] if r["incident_id"] in incidents]
        assert len([r for r in data[child] if r["incident_id"] in incidents]) >= len(mine)
    assert seg["seeds"] == {"companies": 1} and seg["closed"] is True
    assert sqlsnap.verify(str(out), integrity=True).ok


# -- the command line ------------------------------------------------------------------------------------


def test_cli_where_refuses_injection_with_one_line(sqlite_url: str, tmp_path: Path) -> None:
    make_shapes(sqlite_url)
    out = tmp_path / "x.json"
    for text in ["tenants.id = 1; DROP TABLE nodes", "tenants.id = 1 OR 1=1", "tenants.name = '' OR ''=''"]:
        result = CliRunner().invoke(main, ["export", sqlite_url, "--where", text, "-o", str(out), "-q"])
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    # Quoted SQL is a value: compared as text, it selects nothing.
    result = CliRunner().invoke(main, ["export", sqlite_url, "--where", "tenants.name = 'x'' OR ''1''=''1'",
                                       "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert all(rows == [] for rows in load(out)["data"].values())
    result = CliRunner().invoke(main, ["plan", sqlite_url, "--where", "tenants.nme = 1"])
    assert result.exit_code == 4 and "did you mean 'name'? its columns are: id, name" in result.output
    assert sqlsnap.export(sqlite_url, str(tmp_path / "all.json")).tables["nodes"].rows == 13  # untouched


# -- date ranges and closed tables ---------------------------------------------------------------------


def make_dated(url: str) -> None:
    ts = "datetime" if url.startswith("mysql") else "timestamp"
    execute_script(url, [
        "CREATE TABLE tenants (id integer PRIMARY KEY, name varchar(50))",
        f"CREATE TABLE events (id integer PRIMARY KEY, tenant_id integer NOT NULL, parent_event integer, "
        f"created_at {ts}, FOREIGN KEY (tenant_id) REFERENCES tenants(id), "
        "FOREIGN KEY (parent_event) REFERENCES events(id))",
        f"CREATE TABLE comments (id integer PRIMARY KEY, event_id integer NOT NULL, created_at {ts}, "
        "FOREIGN KEY (event_id) REFERENCES events(id))",
        "INSERT INTO tenants VALUES (1, 'one'), (2, 'two')",
        "INSERT INTO events VALUES (1, 1, NULL, '2026-09-30 23:00:00'), (2, 1, NULL, '2026-10-05 00:00:00'), "
        "(3, 2, 1, '2026-10-20 00:00:00'), (4, 2, NULL, '2026-11-01 00:00:00')",
        "INSERT INTO comments VALUES (1, 1, '2026-10-02 00:00:00'), (2, 4, '2026-11-05 00:00:00')",
    ])


@pytest.mark.parametrize("args, expected", [
    # Rows created in October, and the rows they reference (event 1, a parent of 3 and of comment 1).
    (["--since", "2026-10-01", "--until", "2026-11-01"],
     {"tenants": {1, 2}, "events": {1, 2, 3}, "comments": {1}}),
    (["--since", "2026-10-01", "--until", "2026-11-01", "--date-column", "events.created_at"],
     {"tenants": {1, 2}, "events": {1, 2, 3}, "comments": set()}),
    (["--since", "2026-11-01"], {"tenants": {2}, "events": {4}, "comments": {2}}),
    (["--tables", "comments", "--closed"], {"tenants": {1, 2}, "events": {1, 4}, "comments": {1, 2}}),
])
def test_date_ranges_and_closed_tables_bring_their_parents(any_url: str, tmp_path: Path, args: list[str],
                                                           expected: dict[str, set[int]]) -> None:
    make_dated(any_url)
    out = tmp_path / "range.json"
    result = CliRunner().invoke(main, ["export", any_url, *args, "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    doc = load(out)
    assert {t: {r["id"] for r in rows} for t, rows in doc["data"].items()} == expected
    assert doc["metadata"]["export_type"] == "segment" and doc["metadata"]["segment"]["closed"] is True
    assert sqlsnap.verify(str(out), integrity=True).ok


def test_date_range_errors_name_the_fix(sqlite_url: str, tmp_path: Path) -> None:
    make_dated(sqlite_url)
    out = str(tmp_path / "x.json")
    cases = [
        (["--since", "October"], 2, "--since 'October' is not a date; write 2026-10-01"),
        (["--since", "2026-10-01", "--date-column", "events.made_at"], 4,
         "table events has no column 'made_at'"),
        (["--since", "2026-10-01", "--tables", "tenants"], 2,
         "table tenants has no created_at column; name its date column with --date-column"),
        (["--closed"], 2, "give --tables TABLE"),
        (["--since", "2026-10-01", "--where", "tenants.id = 1"], 2, "--where cannot be combined"),
        (["--seed", "3"], 2, "--seed chooses the rows of --sample or --limit; give one of them"),
        (["--sample", "0%"], 2, "give a percentage above 0 and at most 100"),
        (["--sample", "lots"], 2, "--sample 'lots' is not a percentage; write e.g. 5%"),
    ]
    for args, code, message in cases:
        result = CliRunner().invoke(main, ["export", sqlite_url, *args, "-o", out, "-q"])
        assert result.exit_code == code and message in result.output, (args, result.output)
        assert result.output.count("\n") == 1


def test_a_sample_of_a_date_range_or_of_closed_tables(any_url: str, tmp_path: Path) -> None:
    """--sample/--limit choose among the seeds of a date range (or of --closed tables) too, and
    the chosen rows bring their parents only."""
    make_dated(any_url)

    def export(*args: str) -> tuple[dict[str, set[int]], dict[str, Any]]:
        out = tmp_path / "s.json"
        out.unlink(missing_ok=True)
        result = CliRunner().invoke(main, ["export", any_url, *args, "-o", str(out), "-q"])
        assert result.exit_code == 0, result.output
        assert sqlsnap.verify(str(out), integrity=True).ok
        doc = load(out)
        return {t: {r["id"] for r in rows} for t, rows in doc["data"].items()}, doc["metadata"]["segment"]

    october = ["--since", "2026-10-01", "--date-column", "events.created_at"]  # events 2, 3 and 4
    picked, seg = export(*october, "--limit", "2", "--seed", "5")
    assert seg["seeds"] == {"events": 2} and seg["sample"] == {"percent": None, "limit": 2, "seed": 5}
    seeds = picked["events"] & {2, 3, 4}
    assert len(seeds) == 2 and picked["comments"] == set()
    assert picked["events"] == seeds | ({1} if 3 in seeds else set())  # event 3's parent event 1
    assert export(*october, "--limit", "2", "--seed", "5")[0] == picked  # the same seed, the same rows
    assert {frozenset(export(*october, "--limit", "2", "--seed", str(s))[0]["events"] & {2, 3, 4})
            for s in range(6)} != {frozenset(seeds)}  # other seeds, other rows
    everything, _ = export("--tables", "comments", "--closed")
    assert export("--tables", "comments", "--closed", "--sample", "100%")[0] == everything


# -- samples ------------------------------------------------------------------------------------------------


def make_items(url: str) -> None:
    rows = ", ".join(f"({i}, 'item {i}')" for i in range(1, 201))
    notes = ", ".join(f"({i}, {i}, {i % 7 + 1})" for i in range(1, 201))
    execute_script(url, [
        "CREATE TABLE items (id integer PRIMARY KEY, name varchar(20))",
        "CREATE TABLE authors (id integer PRIMARY KEY)",
        "CREATE TABLE item_notes (id integer PRIMARY KEY, item_id integer NOT NULL, "
        "author_id integer NOT NULL, FOREIGN KEY (item_id) REFERENCES items(id), "
        "FOREIGN KEY (author_id) REFERENCES authors(id))",
        f"INSERT INTO items VALUES {rows}",
        "INSERT INTO authors VALUES " + ", ".join(f"({i})" for i in range(1, 8)),
        f"INSERT INTO item_notes VALUES {notes}",
    ])


def test_samples_are_reproducible_and_closed(any_url: str, tmp_path: Path) -> None:
    """A sample of items (--tables): note n belongs to item n and references author n % 7 + 1."""
    make_items(any_url)

    def sample(*args: str) -> set[int]:
        out = tmp_path / "s.json"
        out.unlink(missing_ok=True)
        result = CliRunner().invoke(main, ["export", any_url, "--tables", "items", *args, "-o", str(out),
                                           "-q"])
        assert result.exit_code == 0, result.output
        assert sqlsnap.verify(str(out), integrity=True).ok
        doc = load(out)
        items = {r["id"] for r in doc["data"]["items"]}
        assert {r["id"] for r in doc["data"]["item_notes"]} == items  # the seeds' children
        assert {r["id"] for r in doc["data"]["authors"]} == {i % 7 + 1 for i in items}  # and their parents
        assert doc["metadata"]["segment"]["seeds"] == {"items": len(items)}
        jsonschema.validate(doc["metadata"], json.loads(SCHEMA.read_text()))
        return items

    first = sample("--sample", "10%", "--seed", "7")
    assert first == sample("--sample", "10%", "--seed", "7")  # the same seed, the same rows
    assert first != sample("--sample", "10%", "--seed", "8")
    assert 5 <= len(first) <= 40  # about 20 of 200
    limited = sample("--limit", "5", "--seed", "3")
    assert limited == sample("--limit", "5", "--seed", "3") and len(limited) == 5
    assert limited != sample("--limit", "5", "--seed", "4")
    assert sample("--sample", "100%") == set(range(1, 201))


def test_json_lines_segments_are_closed_too(any_url: str, tmp_path: Path) -> None:
    make_shapes(any_url)
    out = tmp_path / "t1"
    sqlsnap.export(any_url, str(out), format="jsonl", where=parse_where(["tenants.id = 1"]), closure=True)
    meta = json.loads((out / "metadata.json").read_bytes())
    assert meta["segment"]["seeds"] == {"tenants": 1} and meta["tables"]["nodes"]["rows"] == 12
    assert len((out / "order_lines.jsonl").read_text().splitlines()) == 2
    assert sqlsnap.verify(str(out), integrity=True).ok


# -- the segment file ---------------------------------------------------------------------------------------

SEGMENT_FILE = """
[segment]
# attachments.node_ref is a node id without a foreign key in the schema
foreign_keys = [{ table = "attachments", columns = ["node_ref"], references = "nodes", ref_columns = ["id"] }]
skip = ["reviews.order_tenant,order_id"]   # a review does not bring its order
lookups = ["tags"]                         # every tag
"""


def test_segment_file_declares_skips_and_takes_lookups_whole(any_url: str, tmp_path: Path) -> None:
    make_shapes(any_url)
    execute_script(any_url, ["CREATE TABLE attachments (id integer PRIMARY KEY, node_ref integer)",
                             "INSERT INTO attachments VALUES (1, 5), (2, 12)"])
    rules = tmp_path / "segment.toml"
    rules.write_text(SEGMENT_FILE)
    out = tmp_path / "t1.json"
    result = CliRunner().invoke(main, ["export", any_url, "--where", "tenants.id = 1",
                                       "--segment-file", str(rules), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    doc = load(out)
    assert {t: keys(doc, t) for t in doc["data"]} == {
        "tenants": {(1,)},  # order (2, 1), and with it tenant 2 and nodes 11 and 12, is not followed
        "nodes": {(i,) for i in range(1, 11)},
        "tags": {(1,), (2,)},  # a lookup: whole
        "node_tags": {(10, 1)},
        "orders": {(1, 1), (1, 2)},
        "order_lines": {(1,), (2,)},
        "notes": {(1,)},
        "reviews": {(1,)},
        "attachments": {(1,)},  # through the declared key: the attachment of node 5, not of node 12
    }
    assert doc["metadata"]["segment"]["lookups"] == ["tags"]
    jsonschema.validate(doc["metadata"], json.loads(SCHEMA.read_text()))
    # Not following an edge is a choice with a price: review 1's order is not in the file.
    check = sqlsnap.verify(str(out), integrity=True)
    assert check.dangling_total == 1 and check.dangling[0].table == "reviews"
    bad = rules.with_name("bad.toml")
    bad.write_text('[segment]\nlookups = ["tag"]\n')
    result = CliRunner().invoke(main, ["plan", any_url, "--where", "tenants.id = 1",
                                       "--segment-file", str(bad)])
    assert result.exit_code == 2 and "lookup 'tag' is not a table; tables are: attachments, node_tags" \
        in result.output


# -- a table without a primary key ---------------------------------------------------------------------------


def test_a_table_without_primary_key_is_keyed_by_its_foreign_keys(any_url: str, tmp_path: Path) -> None:
    """Its rows are matched by the columns of its foreign keys (docs/segments.md, "Limits"): a row
    with a NULL there cannot be matched, and is left out, even when its other key is the tenant's."""
    make_shapes(any_url)
    execute_script(any_url, [
        "CREATE TABLE audit (tenant_id integer NOT NULL, node_id integer, what varchar(20), "
        "FOREIGN KEY (tenant_id) REFERENCES tenants(id), FOREIGN KEY (node_id) REFERENCES nodes(id))",
        "INSERT INTO audit VALUES (1, 3, 'a'), (1, 3, 'a twin'), (1, NULL, 'no node'), (2, 12, 'other'), "
        "(2, 13, 'other too')",
        # No key at all: nothing tells its rows apart, so none is in the segment.
        "CREATE TABLE loose (n integer, what varchar(20))",
        "INSERT INTO loose VALUES (1, 'x')",
    ])
    out = tmp_path / "t1.json"
    sqlsnap.export(any_url, str(out), where=parse_where(["tenants.id = 1"]), closure=True)
    doc = load(out)
    # (1, 3) twice: rows that agree on the key are in or out together; (1, NULL) left out; (2, 12)
    # neither: node 12 is there only as a parent, so its children do not come along.
    assert sorted(r["what"] for r in doc["data"]["audit"]) == ["a", "a twin"]
    assert doc["metadata"]["tables"]["audit"]["rows"] == 2
    assert doc["data"]["loose"] == [] and "loose" in doc["metadata"]["segment"]["not_reached"]
    assert sqlsnap.verify(str(out), integrity=True).ok
    # The plan counts it the same way (one by one: it is not keyed by a primary key).
    p = sqlsnap.plan(any_url, where=parse_where(["tenants.id = 1"]), closure=True)
    assert p.segment is not None and p.segment.rows is not None and p.segment.rows["audit"] == 2
    assert p.segment.rows["loose"] == 0


# -- the segment file: keys inside JSON values, polymorphic pairs -------------------------------------------

DECLARED_KEYS = """
# events.payload holds {"node": {"id": 5}}: a node's id inside a JSON value
[[segment.foreign_keys]]
table = "events"
columns = ["payload"]
json_paths = ["$.node.id"]
references = "nodes"
ref_columns = ["id"]

# comments.target_id references a node or a tenant, as comments.target_type says
[[segment.foreign_keys]]
table = "comments"
columns = ["target_id"]
when = { target_type = "node" }
references = "nodes"
ref_columns = ["id"]

[[segment.foreign_keys]]
table = "comments"
columns = ["target_id"]
when = { target_type = "tenant" }
references = "tenants"
ref_columns = ["id"]
"""


def make_declared(url: str) -> None:
    make_shapes(url)
    execute_script(url, [
        "CREATE TABLE events (id integer PRIMARY KEY, payload json)",
        "INSERT INTO events VALUES (1, '{\"node\": {\"id\": 5}}'), (2, '{\"node\": {\"id\": 12}}'), "
        "(3, '{\"other\": 1}'), (4, '{\"node\": {\"id\": \"x\"}}')",
        "INSERT INTO events VALUES (5, NULL)",
        "CREATE TABLE comments (id integer PRIMARY KEY, target_type varchar(20) NOT NULL, "
        "target_id integer NOT NULL)",
        "INSERT INTO comments VALUES (1, 'node', 5), (2, 'tenant', 1), (3, 'tenant', 2), (4, 'node', 12), "
        "(5, 'order', 1)",
    ])


def test_segment_file_follows_json_path_keys_and_polymorphic_pairs(any_url: str, tmp_path: Path) -> None:
    make_declared(any_url)
    rules = tmp_path / "segment.toml"
    rules.write_text(DECLARED_KEYS)

    def export(*where: str) -> dict[str, set[int]]:
        out = tmp_path / "s.json"
        out.unlink(missing_ok=True)
        args = [a for w in where for a in ("--where", w)]
        result = CliRunner().invoke(main, ["export", any_url, *args, "--segment-file", str(rules),
                                           "-o", str(out), "-q"])
        assert result.exit_code == 0, result.output
        doc = load(out)
        assert sqlsnap.verify(str(out), integrity=True).ok
        return {t: {r["id"] for r in doc["data"][t]} for t in ("events", "comments", "nodes", "tenants")}

    # Down: the tenant's node 5 brings the event and the comment that point at it, and the tenant
    # its comment; node 12 (another tenant's, here only as a parent) brings neither; "x", a missing
    # path, NULL and another target_type match nothing.
    got = export("tenants.id = 1")
    assert got["events"] == {1} and got["comments"] == {1, 2}
    # Up: the rows pointed at come along as parents, with their own parents (node 12's node 11 and
    # tenant 2); "x" selects no node (compared as text, never cast).
    got = export("events.id in (2, 4)", "comments.id = 3")
    assert got == {"events": {2, 4}, "comments": {3}, "nodes": {11, 12}, "tenants": {2}}


def test_segment_file_refuses_bad_declared_keys(sqlite_url: str, tmp_path: Path) -> None:
    make_declared(sqlite_url)
    rules = tmp_path / "segment.toml"
    cases = [
        ('{ table = "events", columns = ["payload"], json_paths = ["$.node\'; DROP TABLE nodes"], '
         'references = "nodes", ref_columns = ["id"] }', "is not of the form $.key"),
        ('{ table = "events", columns = ["payload"], json_paths = ["$.a", "$.b"], references = "nodes", '
         'ref_columns = ["id"] }', "2 json_paths for 1 columns"),
        ('{ table = "comments", columns = ["target_id"], when = { kind = "node" }, references = "nodes", '
         'ref_columns = ["id"] }', "table comments has no column 'kind'"),
        ('{ table = "comments", columns = ["target_id"], if = { target_type = "node" }, '
         'references = "nodes", ref_columns = ["id"] }', "unknown key 'if'"),
    ]
    for fk, message in cases:
        rules.write_text(f"[segment]\nforeign_keys = [{fk}]\n")
        result = CliRunner().invoke(main, ["plan", sqlite_url, "--where", "tenants.id = 1",
                                           "--segment-file", str(rules)])
        assert result.exit_code == 2 and message in result.output, (fk, result.output)
        assert result.output.count("\n") == 1


def test_policy_file_segment_section(any_url: str, tmp_path: Path) -> None:
    """The policy file's [segment] is a segment file's [segment]; --segment-file replaces it, and
    a full export does not read it."""
    make_shapes(any_url)
    policy = tmp_path / "policy.toml"
    policy.write_text('[segment]\nlookups = ["tags"]\nskip = ["reviews.order_tenant,order_id"]\n')
    out = tmp_path / "t1.json"
    result = CliRunner().invoke(main, ["export", any_url, "--where", "tenants.id = 1",
                                       "--policy", str(policy), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    doc = load(out)
    assert keys(doc, "tags") == {(1,), (2,)} and keys(doc, "tenants") == {(1,)}
    assert doc["metadata"]["segment"]["lookups"] == ["tags"]
    # --segment-file wins: no lookup, no skip.
    rules = tmp_path / "segment.toml"
    rules.write_text("[segment]\n")
    out.unlink()
    result = CliRunner().invoke(main, ["export", any_url, "--where", "tenants.id = 1",
                                       "--policy", str(policy), "--segment-file", str(rules), "-o", str(out),
                                       "-q"])
    assert result.exit_code == 0, result.output
    assert keys(load(out), "tags") == {(1,)} and keys(load(out), "tenants") == {(1,), (2,)}
    # A full export does not check it (its tables may be another database's); a bad one is one line.
    policy.write_text('[segment]\nlookups = ["no_such_table"]\n')
    assert sqlsnap.export(any_url, str(tmp_path / "full.json"), policy=str(policy)).tables["tags"].rows == 2
    result = CliRunner().invoke(main, ["plan", any_url, "--where", "tenants.id = 1", "--policy", str(policy)])
    assert result.exit_code == 2 and "lookup 'no_such_table' is not a table" in result.output
    assert result.output.count("\n") == 1


def test_segment_file_caps_the_children_of_each_parent(any_url: str, tmp_path: Path) -> None:
    """caps: through events.tenant_id a tenant brings its first event only (by key); rows the
    capped ones reference still come along, and their own children through other edges."""
    make_dated(any_url)
    execute_script(any_url, ["INSERT INTO events VALUES (5, 1, 2, '2026-12-01 00:00:00'), "
                             "(6, 1, NULL, '2026-12-02 00:00:00')"])
    rules = tmp_path / "segment.toml"

    def export(cap: int | None, *where: str) -> dict[str, set[int]]:
        rules.write_text("[segment]\n" + (f'caps = [{{ edge = "events.tenant_id", children = {cap} }}]\n'
                                          if cap else ""))
        out = tmp_path / "s.json"
        out.unlink(missing_ok=True)
        args = [a for w in where for a in ("--where", w)]
        result = CliRunner().invoke(main, ["export", any_url, *args, "--segment-file", str(rules),
                                           "-o", str(out), "-q"])
        assert result.exit_code == 0, result.output
        assert sqlsnap.verify(str(out), integrity=True).ok
        return {t: {r["id"] for r in rows} for t, rows in load(out)["data"].items()}

    assert export(None, "tenants.id = 1")["events"] == {1, 2, 5, 6, 3}  # 3: a child of 1 (parent_event)
    capped = export(1, "tenants.id = 1")
    # Event 1 through the capped edge; its children through parent_event (3, another tenant's, whose
    # tenant comes as a parent) and their comments; not 2, 5 and 6.
    assert capped["events"] == {1, 3} and capped["comments"] == {1} and capped["tenants"] == {1, 2}
    assert export(2, "tenants.id = 1")["events"] == {1, 2, 3, 5}  # 5: a child of 2
    # Up is never capped: the comment's event and its parents all come.
    assert export(1, "comments.id = 2")["events"] == {4}
    rules.write_text('[segment]\ncaps = [{ edge = "events.tenant_id", children = 0 }]\n')
    result = CliRunner().invoke(main, ["plan", any_url, "--where", "tenants.id = 1",
                                       "--segment-file", str(rules)])
    assert result.exit_code == 2 and "caps[0] needs edge and children" in result.output
