"""Which tables an export takes: ``--tables`` and ``--exclude-tables`` globs."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from ..errors import NotFoundError
from ..model import Table


def select_tables(
    tables: Sequence[Table], include: Sequence[str] | None, exclude: Sequence[str] | None
) -> tuple[list[Table], list[str]]:
    """Apply ``--tables`` and ``--exclude-tables`` globs; return (kept, excluded names)."""
    names = [t.name for t in tables]
    if include:
        unmatched = [p for p in include if not fnmatch.filter(names, p)]
        if unmatched:
            raise NotFoundError(
                f"no table matches {', '.join(repr(p) for p in unmatched)} in --tables; tables are: "
                + (", ".join(sorted(names)) or "(none)"), table=unmatched[0])
        kept = [t for t in tables if any(fnmatch.fnmatchcase(t.name, p) for p in include)]
    else:
        kept = list(tables)
    excluded = [t.name for t in kept if any(fnmatch.fnmatchcase(t.name, p) for p in exclude or ())]
    return [t for t in kept if t.name not in excluded], sorted(excluded)
