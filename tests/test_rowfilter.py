"""Row filters in the plan (plan/filters.py): the same filter selects the same rows on every
dialect, counts and metadata follow it, values stay values (never SQL), and bad filters
fail before any row is read."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

import sqlsnap
from sqlsnap.errors import NotFoundError, UsageError
from sqlsnap.plan.filters import Condition, RowFilter

from .conftest import execute_script

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "metadata.schema.json"
ROWS = [
    (1, "open", "2026-09-30 23:00:00", "10.50"),
    (2, "closed", "2026-10-01 00:00:00", "3.25"),
    (3, "open", "2026-10-15 12:00:00", "7.00"),
    (4, "it's; DROP TABLE incidents; --", "2026-11-02 08:00:00", None),
    (5, "open", "2026-11-03 09:00:00", "1.00"),
]


def make_tables(url: str) -> None:
    ts = "timestamp" if not url.startswith("mysql") else "datetime"

    def literal(v: object) -> str:
        if v is None:
            return "NULL"
        return str(v) if isinstance(v, int) else "'" + str(v).replace("'", "''") + "'"

    rows = ", ".join("(" + ", ".join(literal(v) for v in r) + ")" for r in ROWS)
    execute_script(url, [
        f"CREATE TABLE incidents (id integer PRIMARY KEY, status varchar(60), created_at {ts}, "
        "cost numeric(8,2))",
        f"INSERT INTO incidents VALUES {rows}",
        "CREATE TABLE notes (id integer PRIMARY KEY, incident_id integer REFERENCES incidents(id), "
        "body text)",
        "INSERT INTO notes VALUES (1, 1, 'a'), (2, 3, 'b')",
    ])


@pytest.mark.parametrize("layout", ["json", "jsonl"])
def test_the_same_filter_selects_the_same_rows_on_every_dialect(any_url: str, tmp_path: Path,
                                                                layout: str) -> None:
    make_tables(any_url)
    where = {"incidents": RowFilter.of(("created_at", ">=", "2026-10-01"), ("status", "in", "open", "closed"),
                                       ("cost", "is not null"))}
    out = tmp_path / ("out.json" if layout == "json" else "out")
    result = sqlsnap.export(any_url, str(out), format=layout, where=where)
    if layout == "json":
        doc = json.loads(out.read_bytes())
        ids = [r["id"] for r in doc["data"]["incidents"]]
        meta = doc["metadata"]
    else:
        ids = [json.loads(line)["id"] for line in (out / "incidents.jsonl").read_text().splitlines()]
        meta = json.loads((out / "metadata.json").read_bytes())
    assert sorted(ids) == [2, 3, 5]
    assert result.tables["incidents"].rows == 3 and meta["tables"]["incidents"]["rows"] == 3
    assert result.tables["notes"].rows == 2  # unfiltered tables whole
    assert meta["export_type"] == "segment"
    assert meta["filters"] == {"incidents": [
        {"column": "created_at", "op": ">=", "values": ["2026-10-01"]},
        {"column": "status", "op": "in", "values": ["open", "closed"]},
        {"column": "cost", "op": "is not null", "values": []}]}
    assert sqlsnap.verify(str(out)).ok
    jsonschema.validate(meta, json.loads(SCHEMA.read_text()))  # the documented shape of filters


def test_values_are_bound_never_pasted(any_url: str, tmp_path: Path) -> None:
    """A value that looks like SQL is compared as text, on every dialect."""
    make_tables(any_url)
    evil = "it's; DROP TABLE incidents; --"
    out = tmp_path / "out.json"
    sqlsnap.export(any_url, str(out), where={"incidents": RowFilter.of(("status", "=", evil))})
    assert [r["id"] for r in json.loads(out.read_bytes())["data"]["incidents"]] == [4]
    out2 = tmp_path / "again.json"
    sqlsnap.export(any_url, str(out2), where={"incidents": RowFilter.of(("status", "=", "x' OR '1'='1"))})
    assert json.loads(out2.read_bytes())["data"]["incidents"] == []
    assert sqlsnap.export(any_url, str(tmp_path / "all.json")).tables["incidents"].rows == 5  # still there


def test_between_and_typed_values(any_url: str, tmp_path: Path) -> None:
    make_tables(any_url)
    out = tmp_path / "out.json"
    sqlsnap.export(any_url, str(out), where={"incidents": RowFilter.of(
        ("created_at", "between", date(2026, 10, 1), date(2026, 10, 31)), ("cost", ">", Decimal("3.5")),
        ("id", "!=", 1))})
    assert [r["id"] for r in json.loads(out.read_bytes())["data"]["incidents"]] == [3]


@pytest.mark.postgresql
def test_postgresql_filters_apply_to_every_part_and_both_paths(pg_url: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A table read in page ranges by several readers, through the server's JSON and the
    portable path: the filter holds in every range, the counts match."""
    from sqlsnap.exporter import channel

    execute_script(pg_url, [
        "CREATE TABLE big (id int PRIMARY KEY, pad text)",
        "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
        "ANALYZE big",
    ])
    monkeypatch.setattr(channel, "PART_BYTES", 64 << 10)
    where = {"big": RowFilter.of(("id", "<=", 15000), ("id", "!=", 7))}
    for server_json in (True, False):
        out = tmp_path / f"{server_json}.json"
        result = sqlsnap.export(pg_url, str(out), jobs=2, where=where, server_json=server_json)
        ids = [r["id"] for r in json.loads(out.read_bytes())["data"]["big"]]
        assert result.tables["big"].rows == len(ids) == 14999 and 7 not in ids and max(ids) == 15000


def test_bad_filters_fail_before_reading_with_the_valid_names(sqlite_url: str, tmp_path: Path) -> None:
    make_tables(sqlite_url)
    with pytest.raises(NotFoundError, match=r"row filter on 'incident': there is no such table; did you "
                                            r"mean 'incidents'\? tables are: incidents, notes"):
        sqlsnap.export(sqlite_url, str(tmp_path / "a.json"), where={"incident": RowFilter.of(("id", "=", 1))})
    with pytest.raises(NotFoundError, match=r"there is no column 'stat'; did you mean 'status'\?"):
        sqlsnap.export(sqlite_url, str(tmp_path / "b.json"),
                       where={"incidents": RowFilter.of(("stat", "=", 1))})
    with pytest.raises(UsageError, match=r"row filter on notes, which is not exported"):
        sqlsnap.export(sqlite_url, str(tmp_path / "c.json"), exclude_tables=["notes"],
                       where={"notes": RowFilter.of(("id", "=", 1))})
    with pytest.raises(UsageError, match=r"unknown operator 'like'"):
        Condition("status", "like", ("%",))
    with pytest.raises(UsageError, match=r"between takes 2 values, not 1"):
        Condition("id", "between", (1,))
    with pytest.raises(UsageError, match=r"holds a list"):
        Condition("id", "=", ([1],))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.db"]


def test_plan_shows_the_filter(sqlite_url: str) -> None:
    make_tables(sqlite_url)
    p = sqlsnap.plan(sqlite_url, where={"incidents": RowFilter.of(("status", "in", "open", "closed"))})
    assert p.export_type == "segment"
    assert "    rows       status in ('open', 'closed')" in p.render()
    assert p.to_json()["filters"] == {
        "incidents": [{"column": "status", "op": "in", "values": ["open", "closed"]}]}
    assert sqlsnap.plan(sqlite_url).to_json()["export_type"] == "full"
