"""What the commands show on stderr: progress, the closing summary, warnings.

Data goes to stdout only when asked (``-o -`` or ``--json``); everything here goes to stderr.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..exporter import ExportResult
    from ..model import Table
    from ..plan import Plan


def echo_err(text: str) -> None:
    click.echo(text, err=True)


def count(n: int, noun: str) -> str:
    """``1 row``, ``2 rows``, ``10,171 rows``: the plural only where it is one."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


class PlainProgress:
    """One line per finished table: for logs and pipes, where redrawn bars are noise."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.lock = threading.Lock()

    def start(self, tables: Sequence[Table]) -> None:
        self.echo(f"exporting {count(len(tables), 'table')}")

    def advance(self, table: str, rows: int, nbytes: int) -> None:
        pass

    def table_done(self, table: str, rows: int, nbytes: int) -> None:
        with self.lock:
            self.echo(f"  {table}: {count(rows, 'row')}, {human_bytes(nbytes)}")

    def finish(self) -> None:
        pass


class BarProgress:
    """A rich progress bar per table, on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            TextColumn("{task.completed:>12,.0f} rows"),
            TextColumn("{task.fields[size]:>10}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.bytes: dict[str, int] = {}
        self.estimates: dict[str, int | None] = {}

    def start(self, tables: Sequence[Table]) -> None:
        self.estimates = {t.name: t.estimated_rows for t in tables}
        self.progress.start()

    def _task(self, table: str) -> Any:
        if table not in self.tasks:
            from rich.markup import escape

            self.bytes[table] = 0
            # Escaped: the description is read as rich markup, and a table named "[/red]"
            # crashed the display (MarkupError).
            self.tasks[table] = self.progress.add_task(
                escape(table), total=self.estimates.get(table) or None, size="")
        return self.tasks[table]

    def advance(self, table: str, rows: int, nbytes: int) -> None:
        task = self._task(table)
        self.bytes[table] += nbytes
        self.progress.update(task, advance=rows, size=human_bytes(self.bytes[table]))

    def table_done(self, table: str, rows: int, nbytes: int) -> None:
        task = self._task(table)
        self.progress.update(task, total=rows, completed=rows, size=human_bytes(nbytes))

    def finish(self) -> None:
        self.progress.stop()


def make_progress(quiet: bool) -> PlainProgress | BarProgress | None:
    """Bars on a terminal, one line per table otherwise, nothing with -q."""
    if quiet:
        return None
    return BarProgress() if sys.stderr.isatty() else PlainProgress(echo_err)


def print_summary(result: ExportResult) -> None:
    """The export's closing line (and the file's SHA-256 when a .sha256 file was written)."""
    s = result.summary()
    where = "standard output" if result.path == "-" else result.path
    echo_err(
        f"exported {count(s['tables'], 'table')}, {count(s['rows'], 'row')}, {human_bytes(s['bytes'])} "
        f"in {s['seconds']:.1f} s to {where}"
    )
    if s.get("checksum_file"):
        echo_err(f"sha256 {s['sha256']} (in {s['checksum_file']})")


#: Plan notices an export prints before reading (``sqlsnap plan`` shows them all): a pattern
#: that matches nothing is most often a typo that would silently export more than meant.
NOTED = ("unmatched-pattern",)


def warn_plan(plan: Plan, quiet: bool = False) -> None:
    """Security warnings an export must not start silently (secrets included, a throwaway
    key), even with -q; and, unless quiet, the notices of NOTED."""
    for notice in plan.notices:
        if notice.code in ("secret-included", "ephemeral-key"):
            echo_err(f"Warning: {notice.message}")
        elif notice.code in NOTED and not quiet:
            echo_err(f"Note: {notice.message}")
