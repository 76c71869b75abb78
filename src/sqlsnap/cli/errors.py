"""The one place where the library's errors become a one-line ``Error: ...`` and an exit code.

Every command calls the library through :func:`run`; a command that finds a failure in a
result (verify's dangling keys, an option conflict) ends through :func:`fail`. The exit
codes are the library's (:data:`sqlsnap.errors.EXIT_CODES`); each command's --help lists them.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from ..errors import EXIT_CODES, Interrupted, SnapError
from ..urls import mask
from .output import echo_err

T = TypeVar("T")

EXIT_CODES_HELP = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


def exit_codes_epilog() -> str:
    """The "Exit codes:" block at the end of every command's --help."""
    return "\b\nExit codes:\n" + EXIT_CODES_HELP


def fail(exc: SnapError) -> NoReturn:
    """Print ``exc`` as one line, credentials masked, and exit with its code."""
    echo_err(f"Error: {mask(str(exc))}")
    sys.exit(exc.exit_code)


def _ignore_signals() -> None:
    """After an interrupt the library has cleaned up; a second Ctrl-C (or SIGTERM) while the
    process prints its line and exits would kill it by the signal (exit -2, the line lost in
    a script's log) or print a traceback."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def run(fn: Callable[[], T]) -> T:
    """Call the library; turn its errors into ``Error: ...`` and the documented exit code."""

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)
        # Python's own Ctrl-C (KeyboardInterrupt) from here on, in place of the startup
        # handler (sqlsnap/_startup.py), which ends the process at once.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not gc.isenabled():
        # The sqlsnap command, whose start turned collection off (sqlsnap/_startup.py): what
        # the imports made lives until the process ends, so it is kept out of every collection
        # (and out of the one at exit, about 20 ms) instead of traced again by each. A program
        # calling the CLI in its own process keeps its collector as it was.
        gc.freeze()
        gc.enable()
    try:
        return fn()
    except SnapError as exc:
        if isinstance(exc, Interrupted):
            _ignore_signals()
        fail(exc)
    except KeyboardInterrupt:
        _ignore_signals()
        echo_err("Error: interrupted; the export was abandoned and no file was left behind")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last net: a bug must not print a traceback
        if os.environ.get("SQLSNAP_DEBUG") == "1":
            raise
        detail = mask(" ".join(str(exc).split()))[:300]
        echo_err(f"Error: internal error ({type(exc).__name__}: {detail}); nothing was left under the "
                 "final name. Please report it; SQLSNAP_DEBUG=1 shows the traceback")
        sys.exit(1)


def _one_line(exc: click.UsageError) -> click.UsageError:
    """The same usage error without its context, so that click prints only ``Error: ...``
    (with the context it printed the usage and a hint first: three lines), naming the help."""
    where = exc.ctx.command_path if exc.ctx is not None else "sqlsnap"
    message = exc.format_message().strip()
    if message.endswith("?"):  # "Did you mean '--jobs'?"
        text = f"{message} See '{where} --help'."
    else:
        text = f"{message.rstrip('.')}; see '{where} --help'"
    plain = click.UsageError(text)
    return plain


class OneLineGroup(click.Group):
    """The command group whose usage errors (unknown option or command, a bad value) are one
    ``Error:`` line with exit code 2, as the library's errors are."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            if exc.ctx is None:
                raise
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if exc.ctx is None:
                raise
            raise _one_line(exc) from None
