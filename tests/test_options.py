"""ExportOptions (options.py): the one options object the CLI, the service and schedules
share; and cancelling a running export from another thread."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

import sqlsnap
from sqlsnap.errors import Interrupted, UsageError
from sqlsnap.options import ExportOptions, PolicyOptions, SegmentOptions
from sqlsnap.plan.filters import RowFilter

from .conftest import execute_script


def test_options_round_trip_through_json_without_secrets() -> None:
    opts = ExportOptions(
        "postgresql://ana:s3cret@db.internal/app", "s3://bucket/{database}.json.zst", compress="zstd",
        tables=["incidents", "users"], exclude_tables=("debug_*",), jobs=2, environment="production",
        policy=PolicyOptions(exclude_columns=("users.phone",), anonymize=True, hash_key="k" * 40,
                             hash_key_file="/etc/sqlsnap/key"),
        segment=SegmentOptions({"incidents": RowFilter.of(("created_at", ">=", "2026-10-01"))}))
    data = opts.to_json()
    text = json.dumps(data)
    assert "s3cret" not in text and "k" * 40 not in text and "k" * 40 not in repr(opts)
    assert data["source"] == "postgresql://ana:***@db.internal/app"
    back = ExportOptions.from_json(json.loads(text))
    assert back == opts.replace(source=data["source"], policy=opts.policy.__class__(
        exclude_columns=("users.phone",), anonymize=True, hash_key_file="/etc/sqlsnap/key"))
    assert back.tables == ("incidents", "users") and back.export_type == "segment"


def test_bad_options_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(UsageError, match=r"unknown export option 'formt'; valid ones: .*format"):
        ExportOptions.from_json({"source": "sqlite:///x.db", "formt": "json"})
    with pytest.raises(UsageError, match=r"unknown policy option 'anonymise'"):
        ExportOptions.from_json({"source": "sqlite:///x.db", "policy": {"anonymise": True}})
    with pytest.raises(UsageError, match=r"unknown format 'xml'; use one of: json, jsonl"):
        ExportOptions("sqlite:///x.db", format="xml").check()
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'formt'"):
        sqlsnap.export("sqlite:///x.db", "x.json", formt="json")


def test_export_takes_an_options_object(tmp_path: Path, sqlite_url: str) -> None:
    execute_script(sqlite_url, ["CREATE TABLE t (id INTEGER, secret_token TEXT)",
                                "INSERT INTO t VALUES (1, 'x')"])
    out = tmp_path / "out.json"
    result = sqlsnap.export(ExportOptions(sqlite_url, str(out), policy=PolicyOptions(anonymize=True)))
    assert result.total_rows == 1 and json.loads(out.read_bytes())["data"]["t"] == [{"id": 1}]
    assert sqlsnap.plan(ExportOptions(sqlite_url)).tables[0].name == "t"


class CancelAfter:
    """Progress that sets ``event`` once ``rows`` rows were read (on a reader thread)."""

    def __init__(self, event: threading.Event, rows: int) -> None:
        self.event, self.rows, self.seen = event, rows, 0

    def start(self, tables: Any) -> None: ...
    def table_done(self, table: str, rows: int, nbytes: int) -> None: ...
    def finish(self) -> None: ...

    def advance(self, table: str, rows: int, nbytes: int) -> None:
        self.seen += rows
        if self.seen >= self.rows:
            self.event.set()


@pytest.mark.parametrize("layout", ["json", "jsonl"])
def test_a_caller_cancels_a_running_export_and_nothing_is_left(any_url: str, tmp_path: Path,
                                                               layout: str) -> None:
    pad = "'" + "x" * 300 + "'"
    batches = [", ".join(f"({i}, {pad})" for i in range(k, k + 500)) for k in range(0, 20000, 500)]
    execute_script(any_url, ["CREATE TABLE a (id integer PRIMARY KEY, pad varchar(300))",
                             *[f"INSERT INTO a VALUES {rows}" for rows in batches]])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cancel = threading.Event()
    left = r"^cancelled; the export was abandoned and no file was left behind$"
    with pytest.raises(Interrupted, match=left):
        sqlsnap.export(any_url, str(out_dir / ("x.json" if layout == "json" else "x")), format=layout,
                       cancel=cancel, progress=CancelAfter(cancel, 1))
    assert list(out_dir.iterdir()) == []  # no file, no hidden temporary one
    # The source is untouched and a new export runs normally.
    assert sqlsnap.export(any_url, str(out_dir / "y.json")).tables["a"].rows == 20000


def test_a_cancel_set_before_the_start_reads_nothing(sqlite_url: str, tmp_path: Path) -> None:
    execute_script(sqlite_url, ["CREATE TABLE t (id INTEGER)"])
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Interrupted):
        sqlsnap.export(sqlite_url, str(tmp_path / "x.json"), cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.db"]
