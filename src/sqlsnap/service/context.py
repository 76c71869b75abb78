"""What every route shares: the configuration, the state database, the jobs, and the errors
the routes raise (turned into responses in one place, :mod:`.app`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from .config import ServiceConfig
from .jobs import Jobs
from .state import State


@dataclass
class Service:
    config: ServiceConfig
    state: State
    jobs: Jobs
    #: The :class:`.schedules.Scheduler` (set when the application starts).
    scheduler: Any = None


class HTTPProblem(Exception):
    """An error answer: ``{"error": {"status", "code", "message"}}`` from the API, an error
    page (or the login page, for 401) from the pages."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def address(request: Request) -> str:
    """The client's address as the socket saw it (no proxy header is trusted)."""
    return request.client.host if request.client else ""
