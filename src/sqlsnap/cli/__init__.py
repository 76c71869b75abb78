"""The command line: parse options, call one library function, turn errors into one line.

Data goes to stdout only when asked (``-o -`` or ``--json``); progress, warnings and the
closing summary go to stderr.

One module per command; what several share lives in ``options`` (option groups),
``output`` (progress, summaries, stderr) and ``errors`` (the one place where the library's
errors become ``Error: ...`` and an exit code). The library never imports this package;
the commands import the library's functions when they run, so ``sqlsnap --help`` loads no
driver.
"""

from __future__ import annotations

import click

from .._version import __version__
from .audit import audit_cmd
from .decrypt import decrypt_cmd
from .demo import demo_cmd
from .errors import OneLineGroup
from .export import export_cmd
from .inspect import inspect_cmd
from .mcp import mcp_cmd
from .plan import plan_cmd
from .prune import prune_cmd
from .query import query_cmd
from .restore import restore_cmd
from .serve import serve_cmd
from .tokens import tokens_cmd
from .users import users_cmd
from .verify import verify_cmd

__all__ = ["main"]


@click.group(cls=OneLineGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sqlsnap")
def main() -> None:
    """Full, consistent, streaming JSON snapshots of PostgreSQL, MySQL/MariaDB and SQLite.

    \b
    Start with:  sqlsnap demo
    Then:        sqlsnap export postgresql://user@host/db -o db.json
    """
    from ..exporter.memory import keep_chunk_memory

    keep_chunk_memory()


for _command in (export_cmd, plan_cmd, demo_cmd, verify_cmd, prune_cmd, decrypt_cmd, restore_cmd, inspect_cmd,
                 query_cmd, mcp_cmd, serve_cmd, users_cmd, tokens_cmd, audit_cmd):
    main.add_command(_command)
