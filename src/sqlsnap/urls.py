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
#: Schemes of databases sqlsnap writes snapshots into (restore, query) but never exports
#: from -> dialect: ``duckdb:///path/to/file.duckdb``.
TARGET_SCHEMES = {
    "duckdb": "duckdb",
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


def parse_url(url: str, *, target: bool = False) -> SourceURL:
    """Parse ``postgresql://``, ``postgres://``, ``mysql://`` and ``sqlite:///path`` URLs;
    with ``target``, also ``duckdb:///path`` (a database written to, never exported from)."""
    if "://" not in url:
        raise UsageError(
            f"'{mask(url)}' is not a database URL; use postgresql://user@host/db, "
            "mysql://user@host/db or sqlite:///path/to/file.db"
        )
    scheme = url.split("://", 1)[0].lower()
    base = scheme.split("+", 1)[0]  # tolerate SQLAlchemy-style "postgresql+psycopg://"
    dialect = SCHEMES.get(base)
    if base in TARGET_SCHEMES:
        if not target:
            raise UsageError(
                f"'{scheme}://' is a DuckDB file, which sqlsnap loads snapshots into but cannot export "
                "from; export from postgresql://, mysql:// or sqlite://, then: sqlsnap query SNAPSHOT SQL"
            )
        dialect = TARGET_SCHEMES[base]
    if dialect is None:
        raise UsageError(
            f"unsupported URL scheme '{scheme}://'; use one of: "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if dialect in ("sqlite", "duckdb"):
        # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy spells them
        # (and duckdb_engine spells duckdb:///).
        path = url.split("://", 1)[1]
        if path.startswith("/"):
            path = path[1:]
        path, _, query = path.partition("?")
        if not path:
            raise UsageError(f"{dialect} URL has no file path; use {dialect}:///path/to/file.db")
        return SourceURL(dialect, url, database=unquote(path), params=dict(parse_qsl(query)))
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
