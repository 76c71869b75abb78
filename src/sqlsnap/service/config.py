"""The service's TOML configuration: named sources and destinations, the state database, and
the security settings (docs/service.md has a full example).

Secrets never live in the TOML text: a source URL with a password in it is refused, and the
URL comes from ``url_env`` (an environment variable) or ``url_file`` (a file) instead. The
loaded URL is only ever shown masked.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SnapError, UsageError
from ..urls import mask, parse_url
from .oidc_config import OidcConfig, parse_oidc
from .schedule_config import (
    NotifyConfig,
    ScheduleConfig,
    SettingError,
    given_once,
    parse_notify,
    parse_schedules,
)
from .segment import SegmentRequest

#: What the export form and the API offer.
COMPRESSIONS = ("zstd", "gzip", "none")
#: ``json``: one document; ``jsonl``: a folder of one file per table (downloaded as a tar stream).
FORMATS = ("json", "jsonl")


class ConfigError(UsageError):
    """The configuration file is wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class SourceConfig:
    name: str
    #: The URL with its credentials, from the environment or a file; never shown unmasked.
    url: str = field(repr=False)
    environment: str | None = None
    policy: str | None = None
    anonymize: bool = False
    exclude_tables: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    #: Exports that write protected columns wait for a second admin (:mod:`.approvals`).
    approval: bool = False
    #: The segment an export takes when its request names none (``[sources.NAME.segment]``).
    segment: SegmentRequest = SegmentRequest()
    #: The ``[segment]`` file of this source's schema (foreign keys it lacks, caps, lookups).
    segment_file: str | None = None

    @property
    def shown_url(self) -> str:
        return mask(self.url)


@dataclass(frozen=True)
class DestinationConfig:
    name: str
    #: A local folder, or an ``s3://bucket/prefix/`` URL.
    location: str
    s3_endpoint: str | None = None
    #: age recipients (public keys, and files of them) that exports here may be encrypted to;
    #: with them, an export is encrypted unless its request says ``encrypt: false``.
    encrypt_to: tuple[str, ...] = ()
    encrypt_to_file: tuple[str, ...] = ()
    #: Refuse unencrypted exports to this destination (e.g. a bucket others can read).
    encrypt_required: bool = False
    #: How many recipients are named (a file counts once per key in it), counted when the
    #: configuration is read: pages and the API show it without reading the key files again.
    recipients: int = 0

    @property
    def can_encrypt(self) -> bool:
        return bool(self.encrypt_to or self.encrypt_to_file)

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3://")

    def target(self, filename: str) -> str:
        """Where an export named ``filename`` goes."""
        if self.is_s3:
            return self.location.rstrip("/") + "/" + filename
        return str(Path(self.location) / filename)


@dataclass(frozen=True)
class SecurityConfig:
    session_minutes: int = 480
    #: Off only for plain-HTTP testing on loopback; behind TLS it stays on (docs/service.md).
    cookie_secure: bool = True
    #: Failed logins for one account before it is locked out for ``lockout_minutes``.
    login_max_failures: int = 5
    #: Failed logins from one address (any accounts) within ``lockout_minutes`` before that
    #: address is refused: higher, so that one user's typos lock their account, not the office.
    address_max_failures: int = 20
    lockout_minutes: int = 15
    token_days: int = 90
    #: How long a presigned S3 download link works.
    presign_seconds: int = 300
    #: Single sign-on through a reverse proxy that authenticates users and passes the email in
    #: this header (e.g. "X-Forwarded-Email" from oauth2-proxy). Off when empty. Only requests
    #: whose socket address is in ``trusted_proxies`` may use it; the account must exist.
    proxy_user_header: str = ""
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceConfig:
    sources: Mapping[str, SourceConfig]
    destinations: Mapping[str, DestinationConfig]
    state_path: str
    security: SecurityConfig = SecurityConfig()
    #: A PostgreSQL state database's URL (``[state] url_env``/``url_file``), with its password:
    #: never shown unmasked (:attr:`state_shown`). None: the SQLite file ``state_path``.
    state_url: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    #: Export jobs that may run at once; more wait in the queue.
    workers: int = 2
    #: Niceness added to the export processes: exports are batch work and the pages must not
    #: wait for them when the CPU is short. Three pairs of bench/service.py rounds with 0 and 10
    #: were within the noise of a shared machine (bench/README.md): a priority, not a speed-up.
    export_nice: int = 10
    path: str | None = None
    #: SHA-256 of the configuration file's text: the audit trail notes when it changes.
    digest: str = ""
    #: ``[schedules.NAME]`` by name.
    schedules: Mapping[str, ScheduleConfig] = field(default_factory=dict)
    #: ``[notify]``: where failures (and, if asked, successes) are posted; None: nowhere.
    notify: NotifyConfig | None = None
    #: ``[oidc]``: single sign-on with an OpenID Connect provider; None: off.
    oidc: OidcConfig | None = None

    @property
    def state_shown(self) -> str:
        return mask(self.state_url) if self.state_url else self.state_path


_TOP = {"server", "state", "security", "sources", "destinations", "schedules", "notify", "oidc"}
_SERVER = {"host", "port", "workers", "export_nice"}
_STATE = {"path", "url", "url_env", "url_file"}
_SOURCE = {"url", "url_env", "url_file", "environment", "policy", "anonymize", "exclude_tables",
           "exclude_columns", "approval", "segment", "segment_file"}
_DESTINATION = {"path", "url", "s3_endpoint", "encrypt_to", "encrypt_to_file", "encrypt_required"}


def _check_keys(table: Mapping[str, Any], valid: set[str], where: str) -> None:
    unknown = sorted(set(table) - valid)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; valid keys: {', '.join(sorted(valid))}")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false")
    return value


def _source_url(name: str, table: Mapping[str, Any], env: Mapping[str, str], base: Path) -> str:
    where = f"[sources.{name}]"
    try:
        url = given_once(table, "url", where, env, base, "the database URL")
    except SettingError as exc:
        raise ConfigError(str(exc)) from None
    if "url" in table and parse_url(url).password:
        raise ConfigError(f"{where}: the url holds a password; the configuration never holds a "
                          "secret: put the URL in an environment variable (url_env) or a file (url_file)")
    parse_url(url)  # a bad URL fails at start, not at the first export
    return url


def _state_url(table: Mapping[str, Any], env: Mapping[str, str], base: Path) -> str | None:
    """A PostgreSQL state database's URL, or None for the SQLite file ``path``."""
    if not any(k in table for k in ("url", "url_env", "url_file")):
        return None
    if "path" in table:
        raise ConfigError("[state] takes either path (a SQLite file) or a PostgreSQL URL (url_env, "
                          "url_file), not both")
    try:
        url = given_once(table, "url", "[state]", env, base, "the state database's URL")
    except SettingError as exc:
        raise ConfigError(str(exc)) from None
    try:
        parsed = parse_url(url)
    except UsageError as exc:
        raise ConfigError(f"[state] {exc}") from None
    if parsed.dialect != "postgresql":
        raise ConfigError(f"[state] url must be a postgresql:// URL, not {parsed.dialect}; a SQLite state is "
                          "given with path = \"FILE\"")
    if "url" in table and parsed.password:
        raise ConfigError("[state]: the url holds a password; the configuration never holds a secret: put "
                          "the URL in an environment variable (url_env) or a file (url_file)")
    return url


def _encryption(table: Mapping[str, Any], where: str, base: Path) -> dict[str, Any]:
    """A destination's age recipients, checked at start (a bad key is found before an export).
    Recipients are public keys: they may be written in the file."""
    to = _strings(table.get("encrypt_to", []), f"{where} encrypt_to")
    named = _strings(table.get("encrypt_to_file", []), f"{where} encrypt_to_file")
    files = tuple(str(base / f) for f in named)
    required = _flag(table.get("encrypt_required", False), f"{where} encrypt_required")
    if required and not (to or files):
        raise ConfigError(f"{where} encrypt_required needs the recipients: encrypt_to = [\"age1...\"] or "
                          "encrypt_to_file")
    recipients = 0
    if to or files:
        from ..crypto import load_recipients

        try:
            recipients = len(load_recipients(to, files))
        except SnapError as exc:
            raise ConfigError(f"{where}: {str(exc).replace('--encrypt-to', 'encrypt_to')}") from None
    return {"encrypt_to": to, "encrypt_to_file": files, "encrypt_required": required,
            "recipients": recipients}


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> ServiceConfig:
    """Read and check the configuration at ``path``; relative paths in it are relative to its
    folder. Raises :class:`ConfigError` with the key at fault."""
    env = os.environ if env is None else env
    p = Path(path)
    try:
        text = p.read_text()
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {p} not found; docs/service.md has an example") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {p}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    base = p.resolve().parent
    _check_keys(data, _TOP, str(p))
    server = data.get("server", {})
    _check_keys(server, _SERVER, "[server]")
    state = data.get("state", {})
    _check_keys(state, _STATE, "[state]")
    state_url = _state_url(state, env, base)
    security_table = data.get("security", {})
    valid_security = set(SecurityConfig.__dataclass_fields__)
    _check_keys(security_table, valid_security, "[security]")
    for key, value in security_table.items():
        if key == "trusted_proxies":
            security_table = {**security_table, key: _strings(value, "[security] trusted_proxies")}
            continue
        kind = type(getattr(SecurityConfig, key))
        if type(value) is not kind:
            raise ConfigError(f"[security] {key} must be a {kind.__name__}")
    if security_table.get("proxy_user_header") and not security_table.get("trusted_proxies"):
        raise ConfigError("[security] proxy_user_header needs trusted_proxies: the addresses of the reverse "
                          "proxies allowed to send it")
    sources: dict[str, SourceConfig] = {}
    for name, table in data.get("sources", {}).items():
        _check_keys(table, _SOURCE, f"[sources.{name}]")
        policy = table.get("policy")
        segment_file = table.get("segment_file")
        try:
            segment = SegmentRequest.from_json(table.get("segment"), f"[sources.{name}.segment]")
            segment.check()
        except UsageError as exc:
            message = str(exc)
            raise ConfigError(message if "[sources." in message else f"[sources.{name}.segment]: {message}") \
                from None
        if segment_file is not None and not (base / str(segment_file)).is_file():
            raise ConfigError(f"[sources.{name}] segment_file {base / str(segment_file)} does not exist")
        sources[name] = SourceConfig(
            segment=segment, segment_file=str(base / str(segment_file)) if segment_file else None,
            name=name, url=_source_url(name, table, env, base), environment=table.get("environment"),
            policy=str(base / policy) if policy else None, anonymize=bool(table.get("anonymize", False)),
            exclude_tables=_strings(table.get("exclude_tables", []), f"[sources.{name}] exclude_tables"),
            exclude_columns=_strings(table.get("exclude_columns", []), f"[sources.{name}] exclude_columns"),
            approval=_flag(table.get("approval", False), f"[sources.{name}] approval"))
    destinations: dict[str, DestinationConfig] = {}
    for name, table in data.get("destinations", {}).items():
        where = f"[destinations.{name}]"
        _check_keys(table, _DESTINATION, where)
        if ("path" in table) == ("url" in table):
            raise ConfigError(f"{where} needs exactly one of path (a local folder) or url (s3://bucket/prefix/)")
        encryption = _encryption(table, where, base)
        if "url" in table:
            url = str(table["url"])
            if not url.startswith("s3://"):
                raise ConfigError(f"{where} url must start with s3://; give a local folder with path")
            destinations[name] = DestinationConfig(name, url, table.get("s3_endpoint"), **encryption)
        else:
            destinations[name] = DestinationConfig(name, str(base / str(table["path"])), **encryption)
    if not sources:
        raise ConfigError(f"{p} names no source; add a [sources.NAME] table with url_env")
    if not destinations:
        raise ConfigError(f"{p} names no destination; add a [destinations.NAME] table with path")
    try:
        schedules = parse_schedules(data.get("schedules", {}), sources, destinations)
        notify = parse_notify(data.get("notify", {}), env, base)
        sso = parse_oidc(data.get("oidc", {}), env, base)
    except SettingError as exc:
        raise ConfigError(str(exc)) from None
    return ServiceConfig(
        schedules=schedules, notify=notify, oidc=sso, sources=sources, destinations=destinations,
        state_path=str(base / str(state.get("path", "sqlsnap-state.db"))), state_url=state_url,
        security=SecurityConfig(**security_table), host=str(server.get("host", "127.0.0.1")),
        port=int(server.get("port", 8080)), workers=int(server.get("workers", 2)),
        export_nice=int(server.get("export_nice", 10)), path=str(p),
        digest=hashlib.sha256(text.encode()).hexdigest())
