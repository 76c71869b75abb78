"""The ``[schedules.NAME]`` and ``[notify]`` tables of the service's configuration, checked
(docs/service.md). :mod:`.config` turns a :class:`SettingError` into its ``ConfigError``; what
runs them is :mod:`.schedules` and :mod:`.notify`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import SnapError

#: The export form's compressions (config.COMPRESSIONS, which imports this module).
COMPRESSIONS = ("zstd", "gzip", "none")


class SettingError(ValueError):
    """A schedule or notification setting is wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class Retention:
    keep_last: int | None = None
    max_age: str | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.keep_last, self.max_age, self.keep_daily, self.keep_weekly,
                                           self.keep_monthly))

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class ScheduleConfig:
    name: str
    source: str
    destination: str
    cron: str
    timezone: str = "UTC"
    compress: str = "zstd"
    anonymize: bool | None = None
    exclude_tables: tuple[str, ...] = ()
    #: "run": a due time missed while the service was down runs once at start; "skip": recorded only.
    missed: str = "run"
    retention: Retention = field(default_factory=Retention)

    @property
    def actor(self) -> str:
        return f"schedule:{self.name}"

    def next_due(self, after: float) -> float:
        from croniter import croniter

        start = datetime.fromtimestamp(after, ZoneInfo(self.timezone))
        return float(croniter(self.cron, start).get_next(float))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "destination": self.destination, "cron": self.cron,
                "timezone": self.timezone, "compress": self.compress, "anonymize": self.anonymize,
                "exclude_tables": list(self.exclude_tables), "missed": self.missed,
                "retention": self.retention.to_json()}


_SCHEDULE = {"source", "destination", "cron", "timezone", "compress", "anonymize", "exclude_tables", "missed",
             "keep_last", "max_age", "keep_daily", "keep_weekly", "keep_monthly"}


def parse_schedules(tables: Mapping[str, Any], sources: Mapping[str, Any],
                    destinations: Mapping[str, Any]) -> dict[str, ScheduleConfig]:
    """The ``[schedules.NAME]`` tables, checked; :class:`SettingError` names the key at fault."""
    from croniter import croniter

    from ..prune import parse_age

    out: dict[str, ScheduleConfig] = {}
    for name, table in tables.items():
        where = f"[schedules.{name}]"
        if not isinstance(table, Mapping):
            raise SettingError(f"{where} must be a table")
        unknown = sorted(set(table) - _SCHEDULE)
        if unknown:
            raise SettingError(f"unknown key {unknown[0]!r} in {where}; valid keys: "
                              + ", ".join(sorted(_SCHEDULE)))
        for key in ("source", "destination", "cron"):
            if not isinstance(table.get(key), str):
                raise SettingError(f"{where} needs {key} (a string)")
        if table["source"] not in sources:
            raise SettingError(f"{where} source '{table['source']}' is not a [sources.NAME] table; "
                               f"choose one of: {', '.join(sorted(sources))}")
        if table["destination"] not in destinations:
            raise SettingError(f"{where} destination '{table['destination']}' is not a [destinations.NAME] "
                              f"table; choose one of: {', '.join(sorted(destinations))}")
        if not croniter.is_valid(table["cron"]):
            raise SettingError(f"{where} cron '{table['cron']}' is not a cron expression; e.g. \"0 2 * * *\" "
                              "(daily at 02:00), a sixth field is seconds")
        timezone = table.get("timezone", "UTC")
        try:
            ZoneInfo(str(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingError(f"{where} timezone '{timezone}' is unknown; use an IANA name such as "
                              "\"UTC\" or \"Europe/Paris\"") from None
        compress = table.get("compress", "zstd")
        if compress not in COMPRESSIONS:
            raise SettingError(f"{where} compress must be one of: {', '.join(COMPRESSIONS)}")
        missed = table.get("missed", "run")
        if missed not in ("run", "skip"):
            raise SettingError(f"{where} missed must be \"run\" (once at start) or \"skip\" (recorded only)")
        counts: dict[str, int] = {}
        for key in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly"):
            if key in table:
                value = table[key]
                if type(value) is not int or value < 1:
                    raise SettingError(f"{where} {key} must be a whole number of at least 1")
                counts[key] = value
        max_age = table.get("max_age")
        if max_age is not None:
            try:
                parse_age(str(max_age))
            except SnapError:
                raise SettingError(f"{where} max_age '{max_age}' is not an age; use e.g. \"30d\", \"12h\", "
                                  "\"2w\"") from None
        anonymize = table.get("anonymize")
        if anonymize is not None and not isinstance(anonymize, bool):
            raise SettingError(f"{where} anonymize must be true or false")
        exclude = table.get("exclude_tables", [])
        if not isinstance(exclude, list) or not all(isinstance(t, str) for t in exclude):
            raise SettingError(f"{where} exclude_tables must be a list of strings")
        out[name] = ScheduleConfig(
            name=name, source=table["source"], destination=table["destination"], cron=table["cron"],
            timezone=str(timezone), compress=compress, anonymize=anonymize, exclude_tables=tuple(exclude),
            missed=missed,
            retention=Retention(max_age=str(max_age) if max_age is not None else None, **counts))
    return out


_NOTIFY = {"webhook_url", "webhook_url_env", "webhook_url_file", "on_success", "timeout_seconds"}


@dataclass(frozen=True)
class NotifyConfig:
    webhook_url: str = field(default="", repr=False)
    on_success: bool = False
    timeout_seconds: float = 10.0

    @property
    def shown(self) -> str:
        parts = urlsplit(self.webhook_url)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/..."


def given_once(table: Mapping[str, Any], key: str, where: str, env: Mapping[str, str], base: Path,
               what: str) -> str:
    """The value given by exactly one of ``key`` (in the file), ``key_env`` (an environment
    variable's name) or ``key_file`` (a file's path, relative to the configuration's folder):
    how the configuration takes what may be secret without holding it."""
    given = [k for k in (key, f"{key}_env", f"{key}_file") if k in table]
    if len(given) != 1:
        raise SettingError(f"{where} needs exactly one of {key}, {key}_env or {key}_file")
    if f"{key}_env" in table:
        var = str(table[f"{key}_env"])
        if not env.get(var):
            raise SettingError(f"{where}: the environment variable {var} ({key}_env) is not set; export "
                               f"it with {what}")
        return env[var]
    if f"{key}_file" in table:
        path = base / str(table[f"{key}_file"])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise SettingError(f"{where}: cannot read {key}_file {path}: {exc.strerror}") from None
    return str(table[key])


def parse_notify(table: Mapping[str, Any], env: Mapping[str, str], base: Path) -> NotifyConfig | None:
    if not table:
        return None
    unknown = sorted(set(table) - _NOTIFY)
    if unknown:
        raise SettingError(f"unknown key {unknown[0]!r} in [notify]; valid keys: "
                           + ", ".join(sorted(_NOTIFY)))
    url = given_once(table, "webhook_url", "[notify]", env, base, "the webhook URL")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise SettingError("[notify] the webhook URL must be an http:// or https:// URL")
    on_success = table.get("on_success", False)
    if not isinstance(on_success, bool):
        raise SettingError("[notify] on_success must be true or false")
    timeout = table.get("timeout_seconds", 10)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise SettingError("[notify] timeout_seconds must be a positive number")
    return NotifyConfig(url, on_success, float(timeout))


