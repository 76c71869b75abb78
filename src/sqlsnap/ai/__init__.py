"""Handing a snapshot to an analyst or an AI assistant: the snapshot loaded into DuckDB
(``load``), read-only SQL over it under a safety model (``query``), and an MCP server
(``server``). DuckDB and the MCP SDK are optional extras, imported when first used."""

from __future__ import annotations

from .query import QueryResult, SafeDatabase, query, render

__all__ = ["QueryResult", "SafeDatabase", "query", "render"]
