"""What the service's commands (serve, users, tokens, audit) share: the --config option, and
opening the configuration and the state database."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..errors import MissingDriverError
from .errors import fail, run

if TYPE_CHECKING:
    from ..service.config import ServiceConfig
    from ..service.state import State

config_option: Callable[[Any], Any] = click.option(
    "-c", "--config", "config_path", metavar="FILE", envvar="SQLSNAP_SERVICE_CONFIG", required=True,
    help="The service's configuration file (or $SQLSNAP_SERVICE_CONFIG).")


def missing_extra(exc: ImportError) -> NoReturn:
    fail(MissingDriverError(f"the service needs {exc.name or 'its packages'}; "
                            "pip install 'sqlsnap[service]'"))


def load(path: str) -> ServiceConfig:
    from ..service.config import load_config

    return run(lambda: load_config(path))


def open_state(path: str) -> State:
    from ..service.state_open import open_state as open_configured

    config = load(path)
    state = run(lambda: open_configured(config))
    # Closed when the command ends, whichever way: a PostgreSQL state holds a connection.
    click.get_current_context().call_on_close(state.close)
    return state
