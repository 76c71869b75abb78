"""Standard output, for ``-o -``: cannot be made atomic, so a failure is reported by the exit
code alone."""

from __future__ import annotations

import sys


class StdoutSink:
    """Standard output: cannot be made atomic, so a failure is reported by the exit code."""

    final = "-"

    def __init__(self) -> None:
        self.fh = sys.stdout.buffer

    def commit(self) -> None:
        self.fh.flush()

    def abort(self) -> None:
        try:
            self.fh.flush()
        except OSError:
            pass
