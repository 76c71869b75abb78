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

#: Everything between ``user:`` and the *last* ``@`` of the URL counts as the password: a
#: password with an unencoded ``@``, ``/``, ``#`` or ``?`` must be masked whole too (it showed
#: as ``snap:***@ss@...``). At worst a URL with ``@`` in its query shows less than it could.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^\s]*)@")
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


_ENCODE = ("percent-encoding any @ / # ? : % in the user name or password (@ as %40, / as %2F, # as %23, "
           "? as %3F, : as %3A, % as %25), or give the password in PGPASSWORD, ~/.pgpass or MYSQL_PWD")


def _check_userinfo(url: str, scheme: str) -> None:
    """Refuse, without showing any of it, a password that holds an unencoded ``@ / # ?``.

    The URL parsers disagree on such a URL (libpq stops the user name at the first ``@``,
    Python at the last; ``/ # ?`` end the host part early), so part of the password became
    a host name or a port and was shown in their error messages."""
    rest = url.split("://", 1)[1]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if authority.count("@") > 1:
        raise UsageError(f"the {scheme}:// URL holds more than one '@' before its host; fix it by {_ENCODE}")
    if "@" in rest[end:]:
        # user:pass/...@host, or an '@' in the path or query: the parsers cannot tell which.
        raise UsageError(f"the {scheme}:// URL holds an '@' after its host part, as a password holding '/', "
                         f"'#' or '?' would; fix it by {_ENCODE} (and @ as %40 in a database name)")


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
    _check_userinfo(url, scheme)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        # Not the parser's text: it quotes the bad port, which may be part of a password.
        raise UsageError(f"malformed {scheme}:// URL: its host or port cannot be read; write it as "
                         f"{scheme}://user:password@host:port/database, {_ENCODE}") from None
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
