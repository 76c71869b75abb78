"""The document is written while the tables are read (sqlsnap/exporter/): parts read ahead
of the writer wait in memory, then in spool files, large PostgreSQL tables are read in page
ranges side by side, and none of it may change a byte of the data or let a wrong count
through."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import sqlsnap
from sqlsnap.errors import SnapError
from sqlsnap.exporter import channel
from sqlsnap.sources import postgresql
from tests.conftest import execute_script

TABLES = {
    "a_small": "SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 50) g",
    "b_wide": "SELECT g AS id, repeat(md5(g::text), 20) AS t, g * 1.5 AS n FROM generate_series(1, 3000) g",
    "c_long": "SELECT g AS id, 'row ' || g AS t, now() - g * interval '1 minute' AS ts "
              "FROM generate_series(1, 6000) g",
    "d_empty": "SELECT 1 AS id WHERE false",
}


@pytest.fixture
def pg_tables(pg_url: str) -> str:
    execute_script(pg_url, [f"CREATE TABLE {name} AS {query}" for name, query in TABLES.items()]
                   + ["ANALYZE"])
    return pg_url


def data_and_checksums(path: Path) -> tuple[bytes, Any]:
    raw = path.read_bytes()
    doc = json.loads(raw)
    return raw[raw.index(b'\n"data": {'):], doc


@pytest.mark.postgresql
def test_split_tables_and_spools_write_the_same_bytes_as_one_reader(
        pg_tables: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sqlsnap.export(pg_tables, str(tmp_path / "one.json"), jobs=1)
    reference, ref_doc = data_and_checksums(tmp_path / "one.json")

    # Tables are split in parts of 64 kB; spooled chunks are read back 1000 bytes at a time
    # (so they end inside rows), the writer's in-memory lead is one small chunk, and parts
    # read ahead may hold 20 kB in memory before they spool.
    monkeypatch.setattr(channel, "PART_BYTES", 64 << 10)
    monkeypatch.setattr(channel, "COPY_BYTES", 1000)
    monkeypatch.setattr(channel, "LIVE_BYTES", 2000)
    monkeypatch.setattr(channel, "AHEAD_BYTES", 20_000)
    # Spools may hold 40 kB at once: readers ahead of the writer must wait, and not deadlock.
    monkeypatch.setattr(channel, "SPOOL_BYTES", 40_000)
    monkeypatch.setattr(postgresql, "CHUNK_BYTES", 10_000)  # (one chunk may always go over)
    most = [0]
    acquire = channel.Budget.acquire

    def tracking_acquire(self: Any, n: int, gave_up: Any) -> bool:
        got = acquire(self, n, gave_up)
        most[0] = max(most[0], self.used)
        return got

    monkeypatch.setattr(channel.Budget, "acquire", tracking_acquire)
    parts: dict[str, int] = {}
    split = postgresql.PostgresSource.split

    def counting_split(self: Any, table: Any, n: int) -> Any:
        pieces = split(self, table, n)
        parts[table.name] = len(pieces)
        return pieces

    monkeypatch.setattr(postgresql.PostgresSource, "split", counting_split)
    out = tmp_path / "three.json"
    result = sqlsnap.export(pg_tables, str(out), jobs=3)
    data, doc = data_and_checksums(out)

    assert parts["b_wide"] >= 5 and parts["c_long"] >= 2, parts  # the split really happened
    assert 0 < most[0] <= 40_000 + 10_000 * 1.1  # spooled, within the budget (plus one chunk)
    assert data == reference  # rows, order, separators and checksums alike
    assert doc["checksums"] == ref_doc["checksums"]
    assert {name: t.rows for name, t in result.tables.items()} == {
        "a_small": 50, "b_wide": 3000, "c_long": 6000, "d_empty": 0}
    assert sqlsnap.verify(str(out)).ok


@pytest.mark.postgresql
def test_parts_read_ahead_wait_in_memory_within_their_budget(
        pg_tables: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small parts, read ahead of the writer, wait in memory (no spool file) up to the
    read-ahead budget, and give the same bytes as one reader."""
    sqlsnap.export(pg_tables, str(tmp_path / "one.json"), jobs=1)
    reference, _ = data_and_checksums(tmp_path / "one.json")

    def no_spool(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a part read ahead went to a spool file")

    monkeypatch.setattr(channel.tempfile, "TemporaryFile", no_spool)
    monkeypatch.setattr(channel, "PART_BYTES", 64 << 10)
    monkeypatch.setattr(postgresql, "CHUNK_BYTES", 10_000)
    most = [0]
    try_acquire = channel.Budget.try_acquire

    def tracking(self: Any, n: int) -> bool:
        got = try_acquire(self, n)
        most[0] = max(most[0], self.used)
        return got

    monkeypatch.setattr(channel.Budget, "try_acquire", tracking)
    out = tmp_path / "three.json"
    sqlsnap.export(pg_tables, str(out), jobs=3)
    assert data_and_checksums(out)[0] == reference
    assert 0 < most[0] <= channel.AHEAD_BYTES  # read ahead, in memory, within the budget


@pytest.mark.postgresql
def test_an_encrypted_export_never_spools(pg_tables: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyrage")
    from pyrage import x25519

    def no_spool(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an encrypted export wrote a spool file")

    monkeypatch.setattr(channel.tempfile, "TemporaryFile", no_spool)
    identity = x25519.Identity.generate()
    out = tmp_path / "x.json.age"
    result = sqlsnap.export(pg_tables, str(out), jobs=3, encrypt_to=[str(identity.to_public())])
    assert result.encrypted and result.total_rows == 9050
    key = tmp_path / "key.txt"
    key.write_text(str(identity) + "\n")
    assert sqlsnap.verify(str(out), identities=[str(key)]).ok


def test_a_count_that_does_not_match_the_rows_fails_the_export(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The metadata's counts come first, before the rows: a reader that then streams another
    number (a source that did not keep its snapshot) must fail the export, leaving nothing."""
    execute_script(sqlite_url, ["CREATE TABLE t (id INTEGER)", "INSERT INTO t VALUES (1), (2), (3)"])
    from sqlsnap.sources import sqlite

    monkeypatch.setattr(sqlite._SQLiteReader, "count", lambda self, table: 4)
    with pytest.raises(SnapError, match=r"table t changed during the export: 4 rows counted in the "
                                        r"snapshot, 3 read"):
        sqlsnap.export(sqlite_url, str(tmp_path / "x.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.db"]


def test_keep_chunk_memory_applies_on_glibc_and_respects_the_users_tuning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI lets glibc keep freed chunk memory (sqlsnap.exporter.memory.keep_chunk_memory), unless
    the user tuned malloc through the environment."""
    import platform

    from sqlsnap.exporter.memory import keep_chunk_memory

    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")
    assert keep_chunk_memory() is False
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert keep_chunk_memory() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    for name in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert keep_chunk_memory() is True
