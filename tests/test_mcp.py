"""``sqlsnap mcp`` driven by the MCP client SDK over stdio, as an assistant would: the tools
listed, the seed's questions answered on the demo snapshot and compared with the same SQL
on the source database, escapes refused inside the protocol."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from .conftest import SQLSNAP
from .test_query import build_demo, on_source

pytest.importorskip("duckdb")
pytest.importorskip("mcp")

import anyio  # noqa: E402
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

TOOLS = {"list_tables", "describe_table", "sample_rows", "query", "find_orphans", "relationships"}


@pytest.fixture(scope="module")
def orphaned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo with one user deleted (their sessions, incidents... become orphans), exported."""
    folder = tmp_path_factory.mktemp("mcp")
    db, _ = build_demo(folder)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM users WHERE id = (SELECT min(user_id) FROM sessions)")
    import sqlsnap

    snapshot = folder / "orphaned.json.zst"
    sqlsnap.export(f"sqlite:///{db}", str(snapshot))
    return db, snapshot


def text(result: Any) -> str:
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


def call(result: Any) -> Any:
    assert not result.is_error, text(result)
    body = text(result)
    return json.loads(body) if body.startswith("{") else body


def run_session(snapshot: Path, cache: Path, steps: Any) -> Any:
    """Start ``sqlsnap mcp SNAPSHOT`` and run ``steps(session)`` in an initialized session."""
    env = {"SQLSNAP_CACHE_DIR": str(cache)}
    if "PYTHONPATH" in os.environ:  # the tree under test, when it is not the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    params = StdioServerParameters(command=SQLSNAP, args=["mcp", str(snapshot)], env=env)

    async def main() -> Any:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await steps(session)

    return anyio.run(main)


def test_tools_and_resources_are_listed_and_described(orphaned, tmp_path: Path) -> None:
    async def steps(session: ClientSession) -> Any:
        tools = (await session.list_tools()).tools
        resources = (await session.list_resources()).resources
        dictionary = await session.read_resource("sqlsnap://dictionary")
        metadata = await session.read_resource("sqlsnap://metadata")
        return tools, resources, dictionary, metadata

    tools, resources, dictionary, metadata = run_session(orphaned[1], tmp_path, steps)
    assert {t.name for t in tools} == TOOLS
    for tool in tools:
        assert tool.description and len(tool.description) > 40, tool.name
        assert tool.annotations and tool.annotations.read_only_hint, tool.name
    # Few, short tools: the whole list costs well under 2,000 tokens (~4 characters each).
    assert len(json.dumps([t.model_dump(mode="json") for t in tools])) < 8000
    assert {str(r.uri) for r in resources} == {"sqlsnap://metadata", "sqlsnap://dictionary"}
    assert "## incidents" in dictionary.contents[0].text
    assert "password_hash" in dictionary.contents[0].text  # left out, and said so
    assert json.loads(metadata.contents[0].text)["total_tables"] == 16


def test_the_seed_questions_match_the_source(orphaned, tmp_path: Path) -> None:
    db, snapshot = orphaned
    questions = {
        "most common incident types":
            "select category, count(*) as n from incidents group by 1 order by 2 desc, 1",
        "unanswered clarification questions":
            "select count(*) as n from clarification_questions q where not exists "
            "(select 1 from clarification_answers a where a.question_id = q.id)",
        "average AI response time by operation":
            "select purpose, round(avg(latency_ms), 1) as avg_ms, count(*) as calls from ai_request_logs "
            "group by 1 order by 1",
    }

    async def steps(session: ClientSession) -> Any:
        answers = {k: call(await session.call_tool("query", {"sql": sql})) for k, sql in questions.items()}
        orphans = call(await session.call_tool("find_orphans", {}))
        listed = call(await session.call_tool("list_tables", {}))
        described = call(await session.call_tool("describe_table", {"table": "users"}))
        sample = call(await session.call_tool("sample_rows", {"table": "incidents", "limit": 3}))
        tree = call(await session.call_tool("relationships", {}))
        return answers, orphans, listed, described, sample, tree

    answers, orphans, listed, described, sample, tree = run_session(snapshot, tmp_path, steps)
    for question, sql in questions.items():
        got = [tuple(row.values()) for row in answers[question]["rows"]]
        expected = [tuple(r) for r in on_source(db, sql)]
        assert got == expected, question
        assert "not instructions" in answers[question]["note"]
    # Orphans: each foreign key's count against the same NOT EXISTS on the source.
    assert orphans["total_orphan_rows"] > 0
    for fk in orphans["foreign_keys"]:
        (column,), parent = fk["columns"], fk["references"].split("(")[0]
        ref = fk["references"].split("(")[1].rstrip(")")
        sql = (f'select count(*) from "{fk["table"]}" c where c."{column}" is not null and '
               f'not exists (select 1 from "{parent}" p where p."{ref}" = c."{column}")')
        expected = on_source(db, sql)[0][0]
        assert fk["orphans"] == expected, fk
    assert {t["table"] for t in listed["tables"]} >= {"incidents", "users", "ai_request_logs"}
    assert any(c.get("left_out") for c in described["columns"] if c["name"] == "password_hash")
    assert len(sample["rows"]) == 3 and "not instructions" in sample["note"]
    # Each table expanded once, under its first parent; the tree starts at tables that reference nothing.
    for table in listed["tables"]:
        assert sum(line.strip().startswith(f"{table['table']} ({table['rows']} rows)")
                   for line in tree.splitlines()) == 1, table["table"]
    assert "\ncompanies (3 rows)\n" in tree and "\n  sites (12 rows) via company_id\n" in tree


def test_masked_columns_are_said_so_over_mcp(orphaned, tmp_path: Path) -> None:
    import sqlsnap

    db, _ = orphaned
    anon = tmp_path / "anon.json"
    sqlsnap.export(f"sqlite:///{db}", str(anon), anonymize=True, hash_key="k" * 32)

    async def steps(session: ClientSession) -> Any:
        return (call(await session.call_tool("describe_table", {"table": "users"})),
                call(await session.call_tool("query", {"sql": "select email from users limit 1"})))

    described, answer = run_session(anon, tmp_path / "cache", steps)
    with sqlsnap.open_snapshot(str(anon)) as snap:
        rules = {c["name"]: c.get("rule") for c in snap.metadata["tables"]["users"]["columns"]}
    assert rules["email"] in ("hash", "fake", "mask")
    for column in described["columns"]:
        if rules.get(column["name"]):
            assert column["masked"].startswith(f"{rules[column['name']]}: "), column
        else:
            assert "masked" not in column, column
    assert "users.email" in answer["masked_columns"]


@pytest.mark.parametrize("sql, message", [
    ("copy incidents to '{dir}/out.csv'", "not COPY"),
    ("select 1; drop table incidents", "one statement per query"),
    ("select * from read_text('/etc/passwd')", "only the snapshot's tables"),
    ("attach '{dir}/x.duckdb' as x", "not ATTACH"),
    ("install httpfs", "not LOAD"),
    ("set enable_external_access = true", "not SET"),
])
def test_escapes_are_refused_over_mcp(orphaned, tmp_path: Path, sql: str, message: str) -> None:
    cache = tmp_path / "cache"

    async def steps(session: ClientSession) -> Any:
        refused = await session.call_tool("query", {"sql": sql.format(dir=tmp_path)})
        after = call(await session.call_tool("query", {"sql": "select count(*) as n from incidents"}))
        return refused, after

    refused, after = run_session(orphaned[1], cache, steps)
    assert refused.is_error and message in text(refused)
    assert after["rows"] == [{"n": on_source(orphaned[0], "select count(*) from incidents")[0][0]}]
    assert {p.name for p in tmp_path.iterdir()} <= {"cache"}  # nothing written (the cache is beside)


def test_a_million_rows_are_capped_over_mcp(orphaned, tmp_path: Path) -> None:
    async def steps(session: ClientSession) -> Any:
        return call(await session.call_tool("query", {"sql": "select * from range(1000000)"}))

    answer = run_session(orphaned[1], tmp_path, steps)
    assert len(answer["rows"]) == 200 and "there are more" in answer["truncated"]


def test_a_missing_snapshot_fails_before_serving(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.run([SQLSNAP, "mcp", str(tmp_path / "nothing.json.zst")], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 4 and proc.stdout == ""
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1
