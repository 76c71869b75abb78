"""Signals in the first moments of the ``sqlsnap`` command, before the CLI can handle them.

Starting a command takes 0.05-0.2 s (click, msgspec, the driver, ...). A Ctrl-C in that time
printed a Python traceback, and a SIGTERM ended the process silently (its default action).
When, and only when, the running program is the ``sqlsnap`` console script, this turns
both into the CLI's own answer: one ``Error:`` line and exit 130. The library imported by
another program leaves that program's signal handling alone.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from types import TracebackType
from typing import Any

MESSAGE = "Error: interrupted before the command started; nothing was done\n"


def _is_the_command() -> bool:
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None) or ""
    return bool(sys.argv) and os.path.basename(script) in ("sqlsnap", "sqlsnap.exe") and \
        os.path.basename(sys.argv[0]) in ("sqlsnap", "sqlsnap.exe")


def guard() -> None:
    """Install the startup handlers, when the program is the ``sqlsnap`` command. The CLI
    replaces them when a command starts its work (cli/errors.py ``run``)."""
    if not _is_the_command():
        return
    # The imports make some 300k objects and no garbage; the collections they trigger found
    # nothing to free and took about 20 ms of the command's 230 ms start. ``cli.errors.run``
    # turns collection back on when the command's work starts.
    gc.disable()

    def on_signal(signum: int, frame: Any) -> None:
        # Nothing has started: end at once. Not by raising KeyboardInterrupt, which an import
        # under way may swallow (a bare except in a third-party module): the command then
        # ran to the end as if no Ctrl-C had come.
        os.write(2, MESSAGE.encode())
        os._exit(130)

    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            # Uncaught here means before the CLI ran: nothing was started, nothing is left.
            sys.stderr.write(MESSAGE)
            sys.stderr.flush()
            os._exit(130)
        previous(kind, exc, tb)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sys.excepthook = hook

guard()
