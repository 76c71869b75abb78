"""Database URLs: parsing, and masking of credentials wherever a URL may be shown."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import UsageError

#: URL scheme -> dialect. ``postgres://`` is what Heroku and Supabase hand out.
SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]*)@")
_SECRET_PARAMS = re.compile(r"(?i)(\b(?:password|passwd|pwd|sslpassword|secret|token)=)[^&\s]+")


def mask(text: str) -> str:
    """Replace passwords in any URLs or ``key=value`` pairs inside ``text`` with ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_PARAMS.sub(r"\1***", text)


@dataclass(frozen=True)
class SourceURL:
    """A parsed source URL. ``password`` is kept out of ``repr`` and out of every display form."""

    dialect: str
    raw: str = field(repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    database: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def display(self) -> str:
        """The URL with its password masked: safe for logs, errors and metadata."""
        return mask(self.raw)


def parse_url(url: str) -> SourceURL:
    """Parse ``postgresql://``, ``postgres://``, ``mysql://`` and ``sqlite:///path`` URLs."""
    if "://" not in url:
        raise UsageError(
            f"'{mask(url)}' is not a database URL; use postgresql://user@host/db, "
            "mysql://user@host/db or sqlite:///path/to/file.db"
        )
    scheme = url.split("://", 1)[0].lower()
    base = scheme.split("+", 1)[0]  # tolerate SQLAlchemy-style "postgresql+psycopg://"
    dialect = SCHEMES.get(base)
    if dialect is None:
        raise UsageError(
            f"unsupported URL scheme '{scheme}://'; use one of: "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if dialect == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy spells them.
        path = url.split("://", 1)[1]
        if path.startswith("/"):
            path = path[1:]
        path, _, query = path.partition("?")
        if not path:
            raise UsageError("sqlite URL has no file path; use sqlite:///path/to/file.db")
        return SourceURL("sqlite", url, database=unquote(path), params=dict(parse_qsl(query)))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"malformed URL '{mask(url)}': {exc}") from None
    return SourceURL(
        dialect,
        url,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        host=unquote(parts.hostname) if parts.hostname else None,
        port=port,
        database=unquote(parts.path.lstrip("/")),
        params=dict(parse_qsl(parts.query)),
    )
