"""Opening the state database a configuration names: the SQLite file of :mod:`.state`, or
PostgreSQL (:mod:`.state_pg`) when ``[state]`` gives a URL."""

from __future__ import annotations

from .config import ServiceConfig
from .state import State


def open_state(config: ServiceConfig) -> State:
    if config.state_url:
        from .state_pg import PostgresState

        return PostgresState(config.state_url)
    return State(config.state_path)
