"""What an export is asked to do, as frozen data that the CLI, the service and its schedules
share, check before connecting, and store as JSON.

:class:`ExportOptions` holds where from and where to, the layout and codecs, and two groups:
:class:`PolicyOptions` (what may leave the database and in which form) and
:class:`SegmentOptions` (which rows). ``to_json()`` never holds a secret: the source URL's
password is masked and the hash key is left out (it comes from ``hash_key_file`` or
``$SQLSNAP_HASH_KEY`` when the options are used again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .codecs import COMPRESSIONS
from .errors import UsageError
from .plan.filters import RowFilter, filters_from_json, filters_to_json
from .plan.segment import Sample, parse_when
from .urls import mask

FORMATS = ("json", "jsonl")


def _strings(value: Sequence[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class PolicyOptions:
    """The export policy (docs/policy.md): columns left out, secrets included on purpose, the
    PII preset, a policy file, and the key of hash, fake and shift-dates."""

    exclude_columns: tuple[str, ...] = ()
    include_secrets: tuple[str, ...] = ()
    anonymize: bool = False
    #: A policy file's path, or a loaded :class:`sqlsnap.policy.Policy` (not stored by to_json).
    policy: Any = None
    hash_key_file: str | None = None
    #: Never in ``repr`` nor in ``to_json``.
    hash_key: bytes | str | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "exclude_columns": list(self.exclude_columns),
            "include_secrets": list(self.include_secrets),
            "anonymize": self.anonymize,
            "policy": self.policy if isinstance(self.policy, str) else None,
            "hash_key_file": self.hash_key_file,
        }


@dataclass(frozen=True)
class SegmentOptions:
    """Which rows: a row filter per table (:class:`sqlsnap.plan.filters.RowFilter`); an
    export with any filter is a segment (``export_type: "segment"``). With ``closure`` the
    filtered rows are seeds, and the export holds them and every row that belongs to them or
    that they reference (docs/segments.md); without it, each filter applies to its table
    alone and other tables are exported whole."""

    where: Mapping[str, RowFilter] = field(default_factory=dict)
    closure: bool = False
    #: A date range (ISO dates or times, ``until`` excluded) on ``date_columns``
    #: (``TABLE.COLUMN``; none: each table's ``created_at``); those rows' parents come along.
    since: str | None = None
    until: str | None = None
    date_columns: tuple[str, ...] = ()
    #: ``--tables ... --closed``: the chosen tables whole, and every row they reference.
    closed: bool = False
    #: A reproducible sample of the seed rows: ``"5%"``, at most ``limit`` rows, by ``seed``.
    sample: str | None = None
    limit: int | None = None
    seed: int | None = None
    #: A TOML file with a [segment] table (docs/segments.md).
    segment_file: str | None = None

    @property
    def active(self) -> bool:
        return (bool(self.where) or self.since is not None or self.until is not None or self.closed
                or self.sample is not None or self.limit is not None)

    @property
    def closes(self) -> bool:
        """Whether the segment is closed under foreign keys (its rows are a closure's)."""
        return self.active and (self.closure or not self.where)

    def to_json(self) -> dict[str, Any]:
        return {"where": filters_to_json(self.where), "closure": self.closure, "since": self.since,
                "until": self.until, "date_columns": list(self.date_columns), "closed": self.closed,
                "sample": self.sample, "limit": self.limit, "seed": self.seed,
                "segment_file": self.segment_file}


@dataclass(frozen=True)
class ExportOptions:
    source: str
    #: A file path (a folder for ``jsonl``), ``s3://bucket/key``, ``-`` for standard output,
    #: or None for ``<database>-export-<UTC time>.json`` in the current folder; may hold the
    #: placeholders of :data:`sqlsnap.stores.PLACEHOLDERS`.
    destination: str | None = None
    format: str = "json"
    compress: str | None = None
    schemas: tuple[str, ...] | None = None
    tables: tuple[str, ...] | None = None
    exclude_tables: tuple[str, ...] = ()
    #: Readers sharing the snapshot; None for one per core, at most 4.
    jobs: int | None = None
    exported_by: str | None = None
    environment: str | None = None
    #: PostgreSQL: let the server build each row's JSON (False: fetch values, encode here).
    server_json: bool = True
    #: PostgreSQL: read binary COPY and write the JSON in C (False: the server builds each
    #: row's JSON with row_to_json; same bytes, more server CPU). Needs sqlsnap._pgcopy.
    binary_copy: bool = True
    #: Seconds to wait for a table lock (another session's ALTER, TRUNCATE, DROP) before the
    #: export fails; 0 waits for ever (docs/reliability.md).
    lock_timeout: float = 60.0
    #: Replace an existing snapshot under the same name (else the export refuses to start).
    force: bool = False
    encrypt_to: tuple[str, ...] = ()
    encrypt_to_file: tuple[str, ...] = ()
    s3_endpoint: str | None = None
    policy: PolicyOptions = PolicyOptions()
    segment: SegmentOptions = SegmentOptions()

    def __post_init__(self) -> None:
        # Lists given by callers become tuples: the options are frozen, hashable and safe to share.
        for name in ("schemas", "tables"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _strings(value) or None)
        for name in ("exclude_tables", "encrypt_to", "encrypt_to_file"):
            object.__setattr__(self, name, _strings(getattr(self, name)))

    def check(self) -> None:
        """Everything that can be checked without the database or the destination."""
        if self.format not in FORMATS:
            raise UsageError(f"unknown format '{self.format}'; use one of: {', '.join(FORMATS)}")
        if self.compress is not None and self.compress not in COMPRESSIONS:
            raise UsageError(f"unknown compression '{self.compress}'; use one of: {', '.join(COMPRESSIONS)}")
        if self.jobs is not None and self.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        if self.lock_timeout < 0:
            raise UsageError("--lock-timeout must be 0 (wait for ever) or more seconds")
        if self.segment.closure and not self.segment.where:
            raise UsageError("a closed segment starts from seed rows; give them with "
                             "--where TABLE.COLUMN OP VALUE")
        parse_when(self.segment.since, "--since")
        parse_when(self.segment.until, "--until")
        Sample.parse(self.segment.sample, self.segment.limit, self.segment.seed)
        if self.segment.segment_file and not self.segment.active:
            raise UsageError("--segment-file says how a segment is closed; give its seeds with --where, "
                             "--since/--until, --tables ... --closed or --sample")

    @property
    def export_type(self) -> str:
        return "segment" if self.segment.active else "full"

    # -- the keyword form of export() and plan() ---------------------------------------------

    _SEGMENT_KEYS = ("where", "closure", "since", "until", "date_columns", "closed", "sample", "limit",
                     "seed", "segment_file")
    _POLICY_KEYS = ("exclude_columns", "include_secrets", "anonymize", "policy", "hash_key_file", "hash_key")

    @classmethod
    def from_kwargs(cls, source: str, destination: str | None = None, /, **kwargs: Any) -> ExportOptions:
        """``export(source, destination, format=..., anonymize=..., where=...)``: the flat
        keyword arguments of the library's functions, sorted into the option groups."""
        policy = {k: kwargs.pop(k) for k in cls._POLICY_KEYS if k in kwargs}
        for k in ("exclude_columns", "include_secrets"):
            if k in policy:
                policy[k] = _strings(policy[k])
        where = kwargs.pop("where", None) or {}
        segment = {k: kwargs.pop(k) for k in cls._SEGMENT_KEYS[1:] if k in kwargs}
        if "date_columns" in segment:
            segment["date_columns"] = _strings(segment["date_columns"])
        known = {f.name for f in fields(cls)} - {"source", "destination", "policy", "segment"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}; valid ones: "
                            + ", ".join(sorted(known | set(cls._POLICY_KEYS) | set(cls._SEGMENT_KEYS))))
        return cls(source, destination, **kwargs, policy=PolicyOptions(**policy),
                   segment=SegmentOptions(dict(where), **segment))

    # -- storing -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The options as JSON: the source URL's password masked, no hash key."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "source":
                value = mask(value)
            elif f.name in ("policy", "segment"):
                value = value.to_json()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportOptions:
        """Options stored by :meth:`to_json` (unknown keys are refused, with the valid ones)."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise UsageError(f"unknown export option {unknown[0]!r}; valid ones: {', '.join(sorted(valid))}")
        if "source" not in data:
            raise UsageError("export options need a source")
        values = dict(data)
        policy = dict(values.pop("policy", None) or {})
        policy_keys = {f.name for f in fields(PolicyOptions)} - {"hash_key"}
        bad = sorted(set(policy) - policy_keys)
        if bad:
            raise UsageError(f"unknown policy option {bad[0]!r}; valid ones: "
                             + ", ".join(sorted(policy_keys)))
        segment = values.pop("segment", None) or {}
        policy_values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in policy.items()}
        return cls(**values, policy=PolicyOptions(**policy_values),
                   segment=SegmentOptions(filters_from_json(segment.get("where", {})),
                                          bool(segment.get("closure", False)), segment.get("since"),
                                          segment.get("until"), tuple(segment.get("date_columns", ())),
                                          bool(segment.get("closed", False)), segment.get("sample"),
                                          segment.get("limit"), segment.get("seed"),
                                          segment.get("segment_file")))

    def replace(self, **changes: Any) -> ExportOptions:
        return replace(self, **changes)
