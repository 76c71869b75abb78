"""Identifiers are data, never terminal markup: a table named ``[/red]`` crashed the progress
bars (rich MarkupError)."""

from __future__ import annotations

import pytest

from sqlsnap.cli.output import BarProgress
from sqlsnap.model import Table

NAMES = ["[/red]", "[bold]x[/bold]", "[link=http://x]y", "\\[/]", "[/]"]


@pytest.mark.parametrize("name", NAMES)
def test_progress_bars_show_markup_as_text(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    bars = BarProgress()
    bars.progress.console.force_terminal = True
    bars.start([Table(name, "main", name, [], estimated_rows=10)])
    bars.advance(name, 5, 100)
    bars.table_done(name, 10, 200)
    bars.finish()
    assert name in capsys.readouterr().err
