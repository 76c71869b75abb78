"""The plan: what an export will write, decided before any row is read.

:func:`build_plan` is pure: from the reflected tables and the options (table and column
exclusions, included secrets, ``--anonymize``, the policy file) it decides, for every
table, whether it is exported and in which order, and for every column whether it is kept,
left out (and why) or transformed (by which rule, given where). ``sqlsnap plan`` prints it
(:meth:`Plan.render`, :meth:`Plan.to_json`); ``sqlsnap export`` builds the same plan with
the same function and executes it, and records it in the metadata. Only :func:`plan` at the
bottom does I/O: it opens the source to read its catalog, never a row.

Precedence for a column, first match wins:

1. ``--exclude-columns`` / ``exclude_columns``: left out.
2. The built-in deny-list: left out, unless included by exact name (``--include-secret``,
   ``include_secrets``).
3. The policy's rule: an exact ``table.column`` beats patterns; among patterns, the last
   in the file wins. ``drop`` leaves the column out.
4. ``--anonymize`` (or ``anonymize = true``): the PII preset.
5. keep.

Then keys are kept joinable: a primary key or referenced column that is hashed or faked
passes its transform to every column that references it (transitively), so joins match.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from ..errors import NotFoundError, SnapError, UsageError
from ..model import Column, ForeignKey, Table, dependency_order
from ..policy import (
    EPHEMERAL_KEY,
    FAKE_KINDS,
    KEY_HINT,
    KEYED_RULES,
    PHONE_KEEP,
    RULE_FAMILIES,
    RULES,
    SHIFT_MAX_DAYS,
    TRANSFORM_RULES,
    ColumnPattern,
    HashKey,
    Named,
    Policy,
    RuleSpec,
    check_glob,
    check_secret_name,
    default_fake_kind,
    default_mask_style,
    is_free_text,
    load_policy,
    parse_column_pattern,
    pii_rule,
    require_key_for,
    resolve_key,
    secret_match,
    type_info,
)
from .filters import Condition, RowFilter, filters_to_json
from .segment import Sample, SegmentPlan, SegmentRules, parse_when
from .select import select_tables

_PRESET = "--anonymize"


@dataclass(frozen=True)
class Notice:
    """Something the person reviewing the plan should know. ``code`` is stable for programs:
    secret-included, not-a-secret, free-text, personal-data, ephemeral-key, join, shift-dates,
    unmatched-pattern, key-left-out."""

    level: str
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"level": self.level, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Exclusion:
    name: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True)
class ColumnPlan:
    name: str
    type: str
    rule: str = "keep"
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Why this rule: ``default``, ``--anonymize: email``, ``sqlsnap.toml, line 7``,
    #: ``--include-secret``, ``foreign key to users.id``.
    origin: str = "default"
    #: A deny-listed column, exported because it was included by name.
    secret: bool = False
    #: ``users.id`` when this column takes that column's transform so that joins match.
    same_as: str | None = None

    @property
    def shown_options(self) -> dict[str, Any]:
        """The options as the plan shows them and the metadata records them: without
        ``owner_entity``, the plan's own note of whose dates a shift-dates moves (derived from
        ``owner``, for the transform and the max_days check)."""
        return {k: v for k, v in self.options.items() if k != "owner_entity"}

    def describe(self) -> str:
        """``fake (email)``, ``truncate (length 200)``, ``hash (as users.id)``."""
        details = [f"{k.replace('_', ' ')} {v}" if k not in ("kind", "as", "to") else str(v)
                   for k, v in self.shown_options.items()]
        if self.same_as:
            details.append(f"as {self.same_as}")
        return self.rule + (f" ({', '.join(details)})" if details else "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "rule": self.rule,
                               "options": self.shown_options, "origin": self.origin}
        if self.secret:
            out["secret"] = True
        if self.same_as:
            out["same_as"] = self.same_as
        return out


@dataclass
class TablePlan:
    name: str
    estimated_rows: int | None
    columns: list[ColumnPlan]
    excluded_columns: list[Exclusion]
    #: The keys as exported: a key with a column left out is not one any more.
    primary_key: list[str]
    foreign_keys: list[ForeignKey]
    #: Which rows; None for all of them.
    row_filter: RowFilter | None = None

    def column_metadata(self, column: Column, plan: ColumnPlan) -> dict[str, Any]:
        out = column.to_metadata()
        if plan.rule != "keep" or plan.secret:
            out["rule"] = plan.rule
            options = plan.shown_options
            if plan.same_as:
                options["same_as"] = plan.same_as
            if options:
                out["rule_options"] = options
            out["rule_origin"] = plan.origin
        if plan.secret:
            out["secret"] = True
        return out

    def metadata(self, table: Table) -> dict[str, Any]:
        """This table's entries of the snapshot metadata: the columns as exported (a ``rule``
        on each one that is not kept as is), the keys among them, what was left out and why."""
        by_name = {c.name: c for c in table.columns}
        return {
            "columns": [self.column_metadata(by_name[c.name], c) for c in self.columns],
            "primary_key": list(self.primary_key),
            "foreign_keys": [fk.to_metadata() for fk in self.foreign_keys],
            "excluded_columns": [e.to_json() for e in self.excluded_columns],
        }

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "estimated_rows": self.estimated_rows,
            "columns": [c.to_json() for c in self.columns],
            "excluded_columns": [e.to_json() for e in self.excluded_columns],
        }
        if self.row_filter is not None:
            out["where"] = self.row_filter.to_json()
        return out


@dataclass
class Plan:
    source: dict[str, Any]
    tables: list[TablePlan]
    excluded_tables: list[Exclusion]
    notices: list[Notice]
    policy_file: str | None = None
    anonymize: bool = False
    #: Where the hash key comes from (``SQLSNAP_HASH_KEY``, ``key file PATH``,
    #: ``ephemeral``); None when no rule needs one. Never the key.
    key_source: str | None = None
    #: A segment closed under foreign keys (the filters are its seeds); None otherwise.
    segment: SegmentPlan | None = None

    def table(self, name: str) -> TablePlan:
        return next(t for t in self.tables if t.name == name)

    @property
    def filters(self) -> dict[str, RowFilter]:
        """The row filter of each table that has one."""
        return {t.name: t.row_filter for t in self.tables if t.row_filter is not None}

    @property
    def export_type(self) -> str:
        """``full``, or ``segment`` when any table's rows are filtered or closed over seeds."""
        return "segment" if self.filters or self.segment is not None else "full"

    @property
    def estimated_rows(self) -> int | None:
        counts = [t.estimated_rows for t in self.tables]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": {k: self.source.get(k) for k in ("dialect", "server_version", "database", "host")},
            "policy_file": self.policy_file,
            "anonymize": self.anonymize,
            "key_source": self.key_source,
            "tables": [t.to_json() for t in self.tables],
            "excluded_tables": [e.to_json() for e in self.excluded_tables],
            "notices": [n.to_json() for n in self.notices],
            "export_type": self.export_type,
            "filters": filters_to_json(self.filters),
            **({"segment": self.segment_json(rows=True)} if self.export_type == "segment" else {}),
            "total_tables": len(self.tables),
            "estimated_rows": self.estimated_rows,
        }

    def segment_json(self, rows: bool = False) -> dict[str, Any]:
        """The ``segment`` object of the plan and the metadata: whether the segment is closed
        under foreign keys and, when it is, its seeds, how each table was reached and the
        other tenants' rows it references (:meth:`SegmentPlan.to_json`)."""
        if self.segment is None:
            return {"closed": False}
        out = self.segment.to_json()
        if rows:  # the plan's own: the metadata has them in its tables
            out["rows"] = self.segment.rows
        return out

    def metadata(self) -> dict[str, Any]:
        """The top-level ``policy`` object of the snapshot metadata."""
        masked = {f"{t.name}.{c.name}": c.rule for t in self.tables for c in t.columns if c.rule != "keep"}
        return {
            "file": self.policy_file,
            "anonymize": self.anonymize,
            "key_source": self.key_source,
            "masked_columns": masked,
            "excluded_columns": {f"{t.name}.{e.name}": e.reason for t in self.tables
                                 for e in t.excluded_columns},
            "included_secrets": [f"{t.name}.{c.name}" for t in self.tables for c in t.columns if c.secret],
            "excluded_tables": {e.name: e.reason for e in self.excluded_tables},
        }

    def render(self) -> str:
        """The plan for people: what ``sqlsnap plan`` prints."""
        src = self.source
        where = f"{src.get('dialect', '?')} database {src.get('database', '?')}"
        if src.get("host"):
            where += f" on {src['host']}"
        settings = []
        if self.policy_file:
            settings.append(f"policy {self.policy_file}")
        if self.anonymize:
            settings.append("--anonymize")
        if self.key_source:
            settings.append(f"hash key: {self.key_source}")
        lines = [f"Plan for {where}" + (f" ({'; '.join(settings)})" if settings else ""), ""]
        rows = self.estimated_rows
        lines.append(f"Tables to export: {len(self.tables)}"
                     + (f", about {rows:,} rows" if rows is not None else ""))
        seg = self.segment
        if seg is not None:
            seeds = ", ".join(f"{n} {r:,}" for n, r in sorted((seg.seeds or {}).items()))
            lines.append("Segment closed under foreign keys: the seed rows, the rows that reference them, "
                         "and every row they reference" + (f" (seed rows: {seeds})" if seeds else ""))
        for t in self.tables:
            est = "rows unknown" if t.estimated_rows is None else f"~{t.estimated_rows:,} rows"
            if seg is not None and seg.rows is not None:
                est = f"{seg.rows[t.name]:,} of {est.lstrip('~')}"
            lines.append(f"  {t.name} ({est})")
            if seg is not None:
                how = seg.reached.get(t.name)
                lines.append(f"    {'reached':<10} " + (
                    "lookup (segment file): taken whole" if t.name in seg.lookups else
                    how.describe() if how else "not reached: no row"))
                cross = (seg.cross_parents or {}).get(t.name)
                if cross:
                    lines.append(f"    {'! parents':<10} {cross['rows']:,} rows reached only as parents "
                                 "(another tenant's, referenced by this segment's rows)")
            if t.row_filter is not None:
                where = " and ".join(_describe(c) for c in t.row_filter.conditions)
                lines.append(f"    {'rows':<10} {where}")
            kept = [c.name for c in t.columns if c.rule == "keep" and not c.secret]
            if kept:
                lines += textwrap.wrap(", ".join(kept), width=100, initial_indent="    keep       ",
                                       subsequent_indent=" " * 15, break_on_hyphens=False)
            for c in t.columns:
                if c.rule != "keep" or c.secret:
                    label = "SECRET" if c.secret and c.rule == "keep" else c.rule
                    lines.append(f"    {label:<10} {c.name}: {c.describe()}  [{c.origin}]")
            for e in t.excluded_columns:
                lines.append(f"    {'left out':<10} {e.name}: {e.reason}")
        if self.excluded_tables:
            lines += ["", f"Tables left out: {len(self.excluded_tables)}"]
            lines += [f"  {e.name}: {e.reason}" for e in self.excluded_tables]
        lines += ["", f"Notices: {len(self.notices)}" if self.notices else "Notices: none"]
        for n in self.notices:
            mark = "!" if n.level == "warning" else "-"
            lines += textwrap.wrap(n.message, width=100, initial_indent=f"  {mark} ",
                                   subsequent_indent="    ")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PlanOptions:
    """Everything but the tables that decides a plan. ``key_source`` says whether a hash key
    was given (and where from); the key itself never enters the plan."""

    dialect: str = ""
    tables: Sequence[str] | None = None
    exclude_tables: Sequence[str] = ()
    exclude_columns: Sequence[str] = ()
    include_secrets: Sequence[str] = ()
    anonymize: bool = False
    policy: Policy | None = None
    key_source: str | None = None
    #: A row filter per table name.
    where: Mapping[str, RowFilter] = field(default_factory=dict)
    #: The filters are the seeds of a segment closed under foreign keys (docs/segments.md).
    closure: bool = False
    #: A date range (``--since``/``--until``, a ``date`` or ``datetime`` each, the end
    #: excluded) on ``date_columns`` (``TABLE.COLUMN``; none: every chosen table's
    #: ``created_at``): those rows are seeds whose parents come along.
    since: Any = None
    until: Any = None
    date_columns: Sequence[str] = ()
    #: ``--tables ... --closed``: the chosen tables whole, and every row they reference.
    closed: bool = False
    #: ``--sample``/``--limit`` with ``--seed``: of the rows of --where, else of the chosen
    #: tables (--tables), else of the tables that reference no other table; closed as --where.
    sample: Sample | None = None
    #: A segment file's rules: declared foreign keys, edges not followed, lookups taken whole.
    segment_rules: SegmentRules | None = None


def _describe(c: Condition) -> str:
    """A condition as people read it: ``created_at >= '2026-10-01'``."""
    values = [repr(x) for x in c.to_json()["values"]]
    if c.op in ("is null", "is not null"):
        return f"{c.column} {c.op}"
    if c.op == "in":
        return f"{c.column} in ({', '.join(values)})"
    if c.op == "between":
        return f"{c.column} between {values[0]} and {values[1]}"
    return f"{c.column} {c.op} {values[0]}"


class _Tracker:
    """Counts which patterns matched, to report the ones that matched nothing."""

    def __init__(self) -> None:
        self.used: set[int] = set()

    def hit(self, item: object) -> None:
        self.used.add(id(item))

    def unused(self, items: Iterable[Any]) -> list[Any]:
        return [i for i in items if id(i) not in self.used]


def _suggestion(name: str, choices: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def build_plan(
    tables: Sequence[Table], options: PlanOptions, source: Mapping[str, Any] | None = None
) -> Plan:
    """Decide the export of ``tables`` (every table the source has: patterns are checked
    against all of them, and foreign keys are followed through excluded ones)."""
    policy = options.policy or Policy()
    anonymize = options.anonymize or policy.anonymize
    by_name = {t.name: t for t in tables}
    notices: list[Notice] = []
    tracker = _Tracker()

    def check_exists(pattern: ColumnPattern, where: str) -> None:
        if not pattern.exact:
            return
        table = by_name.get(pattern.table)
        if table is None:
            raise NotFoundError(f"{where}: {pattern.text!r}: there is no table {pattern.table!r}; "
                                f"{_suggestion(pattern.table, by_name)}tables are: "
                                + (", ".join(sorted(by_name)) or "(none)"), table=pattern.table)
        names = [c.name for c in table.columns]
        if pattern.column not in names:
            raise NotFoundError(f"{where}: {pattern.text!r}: table {table.name} has no column "
                                f"{pattern.column!r}; {_suggestion(pattern.column, names)}its columns are: "
                                + ", ".join(names), table=table.name, column=pattern.column)

    # Everything named must exist; patterns must be well formed. All before any row is read.
    excludes = [Named(p, "--exclude-columns") for p in options.exclude_columns] + policy.exclude_columns
    exclude_patterns = [(parse_column_pattern(n.text, n.where), n) for n in excludes]
    for pattern, n in exclude_patterns:
        check_exists(pattern, n.where)
    included: dict[str, Named] = {}
    for n in [Named(s, "--include-secret") for s in options.include_secrets] + policy.include_secrets:
        check_secret_name(n.text, n.where)
        check_exists(parse_column_pattern(n.text, n.where), n.where)
        included.setdefault(n.text, n)
        if secret_match(n.text.rpartition(".")[2]) is None:
            notices.append(Notice("info", "not-a-secret", (
                f"{n.where} {n.text}: not on the deny-list; it is exported without being included")))
    for spec in policy.rules:
        check_exists(spec.pattern, spec.where)
    table_excludes = [Named(p, "--exclude-tables") for p in options.exclude_tables] + policy.exclude_tables
    for n in [*table_excludes, *(Named(p, "--tables") for p in options.tables or ())]:
        check_glob(n.text, n.where)
    exact_rules = {r.pattern.text: r for r in policy.rules if r.pattern.exact}
    glob_rules = [r for r in policy.rules if not r.pattern.exact]

    def rule_for(table: str, column: str) -> RuleSpec | None:
        spec = exact_rules.get(f"{table}.{column}")
        if spec is None:
            spec = next((r for r in reversed(glob_rules) if r.pattern.matches(table, column)), None)
        if spec is not None:
            tracker.hit(spec)
        return spec

    infos = {(t.name, c.name): type_info(options.dialect, c.type) for t in tables for c in t.columns}

    def resolve(rule: str, given: Mapping[str, Any], t: Table, c: Column, where: str) -> dict[str, Any]:
        info = infos[(t.name, c.name)]
        families = RULE_FAMILIES[rule]
        if families is not None and info.family not in families:
            fitting = [r for r in RULES if info.family in (RULE_FAMILIES[r] or {info.family})]
            raise UsageError(f"{where}: rule {rule!r} does not apply to {t.name}.{c.name}, a column of type "
                             f"{c.type or '(none)'}; rules for it are: {', '.join(fitting)}",
                             table=t.name, column=c.name)
        opts = dict(given)
        if rule == "fake" and "kind" not in opts:
            kind = default_fake_kind(t.name, c.name, info)
            if kind is None:
                raise UsageError(
                    f"{where}: cannot tell which fake values {t.name}.{c.name} should get; say it, e.g. "
                    f"{{ rule = \"fake\", kind = \"name\" }} (kinds: {', '.join(FAKE_KINDS)})",
                    table=t.name, column=c.name)
            opts["kind"] = kind
        elif rule == "mask":
            opts.setdefault("as", default_mask_style(c.name, info))
            if opts["as"] == "phone":
                opts.setdefault("keep", PHONE_KEEP)
        elif rule == "generalize":
            opts.setdefault("to", "year")
        elif rule == "shift-dates":
            opts.setdefault("max_days", SHIFT_MAX_DAYS)
            owner = opts.get("owner") or (t.primary_key[0] if len(t.primary_key) == 1 else None)
            names = [col.name for col in t.columns]
            if owner is not None and owner not in names:
                raise NotFoundError(f"{where}: owner {owner!r} is not a column of {t.name}; "
                                    f"{_suggestion(owner, names)}its columns are: {', '.join(names)}",
                                    table=t.name, column=owner)
            if owner is None:
                opts["owner_entity"] = t.name
            else:
                opts["owner"] = owner
                fk = next((fk for fk in t.foreign_keys if fk.columns == (owner,)), None)
                opts["owner_entity"] = f"{fk.ref_table}.{fk.ref_columns[0]}" if fk else f"{t.name}.{owner}"
        return opts

    def decide(t: Table, c: Column) -> ColumnPlan | Exclusion:
        full = f"{t.name}.{c.name}"
        for pattern, n in exclude_patterns:
            if pattern.matches(t.name, c.name):
                tracker.hit(n)
                return Exclusion(c.name, f"{n.where} {n.text!r}")
        secret = secret_match(c.name)
        spec = rule_for(t.name, c.name)
        if secret and full not in included:
            if spec is not None and spec.pattern.exact and spec.rule != "drop":
                raise UsageError(
                    f"{spec.where}: {full} is a secret column (built-in deny-list: {secret}) and is never "
                    f"exported; to export it, add it to include_secrets or give --include-secret {full}; "
                    "otherwise remove this rule", table=t.name, column=c.name)
            return Exclusion(c.name, f"secret: matches the built-in deny-list ({secret})")
        if spec is not None:
            if spec.rule == "drop":
                return Exclusion(c.name, f"rule drop ({spec.where})")
            return ColumnPlan(c.name, c.type, spec.rule, resolve(spec.rule, spec.options, t, c, spec.where),
                              spec.where, secret=bool(secret))
        if secret:
            return ColumnPlan(c.name, c.type, origin=included[full].where, secret=True)
        if anonymize:
            preset = pii_rule(t.name, c.name, infos[(t.name, c.name)])
            if preset is not None:
                origin = f"{_PRESET}: {preset.what}"
                options = resolve(preset.rule, preset.options, t, c, origin)
                return ColumnPlan(c.name, c.type, preset.rule, options, origin)
        return ColumnPlan(c.name, c.type)

    chosen, excluded_names = select_tables(tables, options.tables, [n.text for n in table_excludes])
    parent_seeds: dict[str, RowFilter] = {}
    down_seeds: dict[str, RowFilter] = dict(options.where) if options.closure else {}
    dated = options.since is not None or options.until is not None or options.closed
    if options.sample is not None and dated:
        # A sample of the date range's (or the closed tables') seed rows, each with its parents.
        parent_seeds = _parent_seeds(options, chosen, by_name)
        chosen, excluded_names = select_tables(tables, None, [n.text for n in table_excludes])
    elif options.sample is not None:
        if options.where and not options.closure:
            raise UsageError("--sample and --limit pick seed rows, which --no-closure does not have; "
                             "leave out --no-closure")
        if not options.where:
            # The chosen tables' rows, or else the root tables' (those that reference no other
            # table: a sample of companies, with all that belongs to them, is a consistent sample).
            names = {t.name for t in chosen}
            seeds = chosen if options.tables else [
                t for t in chosen if not any(fk.ref_table in names - {t.name} for fk in t.foreign_keys)]
            down_seeds = {t.name: RowFilter(()) for t in seeds}
            chosen, excluded_names = select_tables(tables, None, [n.text for n in table_excludes])
    elif dated:
        # The chosen tables are the seeds; every table may hold their parents.
        parent_seeds = _parent_seeds(options, chosen, by_name)
        chosen, excluded_names = select_tables(tables, None, [n.text for n in table_excludes])
    if parent_seeds:
        missing = sorted(set(parent_seeds) - {t.name for t in chosen})
        if missing:
            raise UsageError(f"{missing[0]} is a seed of the segment and left out by --exclude-tables; "
                             "keep it or leave it out of --tables", table=missing[0])
    exported_tables = {t.name for t in chosen}
    _check_filters(options.where, by_name, exported_tables)
    row_filters = {**options.where, **{n: f for n, f in parent_seeds.items() if f.conditions}}

    def decide_anywhere(t: Table, c: Column) -> ColumnPlan | Exclusion:
        """Columns of tables that are not exported are decided too (a hashed key there still
        passes its transform on), but a rule that cannot apply to them is no error."""
        if t.name in exported_tables:
            return decide(t, c)
        try:
            return decide(t, c)
        except SnapError:
            return ColumnPlan(c.name, c.type)

    decisions: dict[tuple[str, str], ColumnPlan | Exclusion] = {
        (t.name, c.name): decide_anywhere(t, c) for t in tables for c in t.columns}

    # Keys stay joinable: follow foreign keys from hashed or faked columns to the columns
    # that reference them, until nothing changes.
    changed = True
    while changed:
        changed = False
        for t in tables:
            for fk in t.foreign_keys:
                for col, ref_col in zip(fk.columns, fk.ref_columns):
                    parent = decisions.get((fk.ref_table, ref_col))
                    child = decisions.get((t.name, col))
                    if not isinstance(parent, ColumnPlan) or not isinstance(child, ColumnPlan):
                        continue
                    if parent.rule not in ("hash", "fake") or child.rule in ("null", "redact"):
                        continue
                    root = parent.same_as or f"{fk.ref_table}.{ref_col}"
                    if child.same_as is not None or f"{t.name}.{col}" == root:
                        continue
                    if child.origin != "default" and (child.rule, dict(child.options)) != \
                            (parent.rule, dict(parent.options)):
                        notices.append(Notice("info", "join", (
                            f"{t.name}.{col} references {fk.ref_table}.{ref_col}, so it gets the same "
                            f"{parent.rule} instead of its own rule {child.describe()} [{child.origin}], "
                            "so that joins still match")))
                    decisions[(t.name, col)] = replace(
                        child, rule=parent.rule, options=parent.options,
                        origin=f"foreign key to {fk.ref_table}.{ref_col}", same_as=root)
                    changed = True

    excluded_tables = []
    for name in excluded_names:
        n = next(n for n in table_excludes if fnmatchcase(name, n.text))
        excluded_tables.append(Exclusion(name, f"{n.where} {n.text!r}"))
    for name in excluded_names:
        for n in table_excludes:
            if fnmatchcase(name, n.text):
                tracker.hit(n)

    plans: list[TablePlan] = []
    for t in dependency_order(chosen):
        cols: list[ColumnPlan] = []
        left_out: list[Exclusion] = []
        for c in t.columns:
            d = decisions[(t.name, c.name)]
            if isinstance(d, ColumnPlan):
                cols.append(d)
            else:
                left_out.append(d)
        exported = {c.name for c in cols}
        pk = list(t.primary_key) if all(k in exported for k in t.primary_key) else []
        if t.primary_key and not pk:
            notices.append(Notice("info", "key-left-out", (
                f"the primary key of {t.name} ({', '.join(t.primary_key)}) is not exported whole; "
                "the metadata lists no primary key for it")))
        fks = [fk for fk in t.foreign_keys if all(col in exported for col in fk.columns)]
        plans.append(TablePlan(t.name, t.estimated_rows, cols, left_out, pk, fks, row_filters.get(t.name)))
        _column_notices(t, cols, decisions, infos, notices)

    spans: dict[str, set[int]] = {}
    for tp in plans:
        for cp in tp.columns:
            if cp.rule == "shift-dates":
                spans.setdefault(str(cp.options["owner_entity"]), set()).add(int(cp.options["max_days"]))
    for entity, days in sorted(spans.items()):
        if len(days) > 1:
            notices.append(Notice("warning", "shift-dates", (
                f"dates owned by {entity} are shifted with different max_days "
                f"({', '.join(map(str, sorted(days)))}), "
                "so one owner's dates move by different offsets in different columns; use one max_days")))
    for pattern, n in exclude_patterns:
        if id(n) not in tracker.used and not pattern.exact:
            notices.append(Notice("info", "unmatched-pattern", f"{n.where} {n.text!r} matches no column"))
    for spec in glob_rules:
        if id(spec) not in tracker.used:
            notices.append(Notice("info", "unmatched-pattern",
                                  f"{spec.where}: rule pattern {spec.pattern.text!r} matches no column"))
    for n in tracker.unused(table_excludes):
        notices.append(Notice("info", "unmatched-pattern", f"{n.where} {n.text!r} matches no table"))

    key_source = options.key_source
    keyed = [(t, c) for t in plans for c in t.columns if c.rule in KEYED_RULES]
    if not keyed:
        key_source = None
    elif key_source is None:
        for tp, cp in keyed:
            decided = decisions.get(_split_full(cp.same_as)) if cp.same_as else cp
            origin = decided.origin if isinstance(decided, ColumnPlan) else cp.origin
            if not origin.startswith(_PRESET):
                raise UsageError(f"{origin}: rule {cp.rule!r} for {tp.name}.{cp.name} needs a hash key; "
                                 f"{KEY_HINT}", table=tp.name, column=cp.name)
        key_source = EPHEMERAL_KEY
        notices.append(Notice("warning", "ephemeral-key", (
            "no hash key was given, so fake values come from a random key used for this export only: "
            f"they differ from one export to the next; {KEY_HINT} for values that stay the same")))

    # A segment's rules name tables of the database segmented: a policy file's [segment] is
    # checked only when a segment is exported.
    if options.segment_rules is not None and (down_seeds or parent_seeds):
        options.segment_rules.check(by_name)
    segment = SegmentPlan.of(chosen, down_seeds, parent_seeds, options.sample, options.segment_rules) \
        if down_seeds or parent_seeds else None
    return Plan(
        source=dict(source or {"dialect": options.dialect}),
        tables=plans,
        excluded_tables=excluded_tables,
        notices=notices,
        policy_file=policy.path if options.policy is not None else None,
        anonymize=anonymize,
        key_source=key_source,
        segment=segment,
    )


#: The date column of a table when --date-column names none (docs/segments.md).
DEFAULT_DATE_COLUMN = "created_at"


def _parent_seeds(options: PlanOptions, chosen: Sequence[Table],
                  by_name: Mapping[str, Table]) -> dict[str, RowFilter]:
    """The seeds of a date range or of ``--tables ... --closed``: rows whose parents are
    followed and whose children are not."""
    if options.where:
        raise UsageError("--where cannot be combined with --since, --until or --closed: --where's seeds "
                         "bring their children, these only their parents, and together they have no one "
                         "meaning; export the tenant with --where, or the date range without it")
    if options.since is None and options.until is None:
        if options.date_columns:
            raise UsageError("--date-column needs --since or --until")
        if not options.tables:
            raise UsageError("--closed takes the tables named by --tables and what they reference; "
                             "give --tables TABLE")
        return {t.name: RowFilter(()) for t in chosen}
    columns: dict[str, str] = {}
    for spec in options.date_columns:
        table_name, _, column = spec.rpartition(".")
        table = by_name.get(table_name)
        if table is None or not column:
            raise NotFoundError(f"--date-column {spec!r}: there is no table {table_name!r}; "
                                f"{_suggestion(table_name, by_name)}tables are: "
                                + ", ".join(sorted(by_name)), table=table_name)
        names = [c.name for c in table.columns]
        if column not in names:
            raise NotFoundError(f"--date-column {spec!r}: table {table_name} has no column {column!r}; "
                                f"{_suggestion(column, names)}its columns are: {', '.join(names)}",
                                table=table_name, column=column)
        columns[table_name] = column
    if not columns:
        chosen_names = {t.name for t in chosen}
        columns = {t.name: DEFAULT_DATE_COLUMN for t in chosen
                   if any(c.name == DEFAULT_DATE_COLUMN for c in t.columns)}
        if options.tables and set(columns) != chosen_names:
            lacking = sorted(chosen_names - set(columns))
            raise UsageError(f"--since/--until: table {lacking[0]} has no {DEFAULT_DATE_COLUMN} column; "
                             "name its date column with --date-column TABLE.COLUMN", table=lacking[0])
        if not columns:
            raise UsageError(f"--since/--until: no table has a {DEFAULT_DATE_COLUMN} column; name the date "
                             "column with --date-column TABLE.COLUMN")
    seeds = {}
    for name, column in columns.items():
        conds = []
        if options.since is not None:
            conds.append(Condition(column, ">=", (options.since,)))
        if options.until is not None:
            conds.append(Condition(column, "<", (options.until,)))
        seeds[name] = RowFilter(tuple(conds))
    return seeds


def _check_filters(where: Mapping[str, RowFilter], tables: Mapping[str, Table], exported: set[str]) -> None:
    """Every filtered table exists and is exported, every filtered column exists."""
    for name, row_filter in where.items():
        table = tables.get(name)
        if table is None:
            raise NotFoundError(f"row filter on {name!r}: there is no such table; {_suggestion(name, tables)}"
                                "tables are: " + (", ".join(sorted(tables)) or "(none)"), table=name)
        if name not in exported:
            raise UsageError(f"row filter on {name}, which is not exported; remove the filter or export "
                             "the table", table=name)
        names = [c.name for c in table.columns]
        for column in row_filter.columns:
            if column not in names:
                raise NotFoundError(f"row filter on {name}: there is no column {column!r}; "
                                    f"{_suggestion(column, names)}its columns are: {', '.join(names)}",
                                    table=name, column=column)


def _split_full(name: str) -> tuple[str, str]:
    table, _, column = name.rpartition(".")
    return table, column


def _column_notices(t: Table, cols: list[ColumnPlan], decisions: Mapping[tuple[str, str], Any],
                    infos: Mapping[tuple[str, str], Any], notices: list[Notice]) -> None:
    for c in cols:
        full = f"{t.name}.{c.name}"
        info = infos[(t.name, c.name)]
        if c.secret:
            notices.append(Notice("warning", "secret-included", (
                f"secret column {full} is exported ({c.origin}); "
                + ("its values are in the file as they are in the database" if c.rule == "keep"
                   else f"rule {c.describe()}"))))
            continue
        if c.rule == "keep":
            preset = pii_rule(t.name, c.name, info)
            if preset is not None and preset.what != "free-text notes":
                notices.append(Notice("warning", "personal-data", (
                    f"column {full} looks like personal data ({preset.what}) and is exported as is; "
                    "use --anonymize or a policy rule to transform it")))
            elif is_free_text(c.name, info):
                notices.append(Notice("warning", "free-text", (
                    f"free-text column {full} is exported as is; it may contain personal information")))
    fk_cols = {(col, fk.ref_table, ref) for fk in t.foreign_keys
               for col, ref in zip(fk.columns, fk.ref_columns)}
    for col, ref_table, ref_col in sorted(fk_cols):
        child = decisions.get((t.name, col))
        parent = decisions.get((ref_table, ref_col))
        if not isinstance(child, ColumnPlan) or not isinstance(parent, ColumnPlan):
            continue
        if child.rule in ("hash", "fake") and child.same_as is None and parent.rule != child.rule:
            notices.append(Notice("warning", "join", (
                f"{t.name}.{col} is {child.rule}ed but {ref_table}.{ref_col}, which it references, is not: "
                "joins between them no longer match")))
        elif parent.rule in TRANSFORM_RULES - {"hash", "fake"} and child.rule == "keep":
            notices.append(Notice("warning", "join", (
                f"{ref_table}.{ref_col} is {parent.describe()} but {t.name}.{col}, which references it, "
                "keeps the original values: joins no longer match, and the originals are in the export")))


def plan_options(
    *,
    dialect: str,
    tables: Sequence[str] | None = None,
    exclude_tables: Sequence[str] | None = None,
    exclude_columns: Sequence[str] | None = None,
    include_secrets: Sequence[str] | None = None,
    anonymize: bool = False,
    policy: str | Policy | None = None,
    hash_key: bytes | str | None = None,
    hash_key_file: str | None = None,
    where: Mapping[str, RowFilter] | None = None,
    closure: bool = False,
    since: Any = None,
    until: Any = None,
    date_columns: Sequence[str] = (),
    closed: bool = False,
    sample: str | None = None,
    limit: int | None = None,
    seed: int | None = None,
    segment_file: str | None = None,
) -> tuple[PlanOptions, HashKey | None]:
    """Load the policy and the key and check everything that needs no database, so that a
    bad policy fails before connecting."""
    pol = load_policy(policy) if isinstance(policy, str) else policy
    key = resolve_key(hash_key, hash_key_file, pol)
    if pol is not None:
        require_key_for(pol.keyed_rules(), key)
    for p in exclude_columns or ():
        parse_column_pattern(p, "--exclude-columns")
    for p in include_secrets or ():
        check_secret_name(p, "--include-secret")
    for p in [*(exclude_tables or ()), *(tables or ())]:
        check_glob(p, "--exclude-tables" if p in (exclude_tables or ()) else "--tables")
    return PlanOptions(
        dialect=dialect,
        tables=list(tables) if tables else None,
        exclude_tables=list(exclude_tables or ()),
        exclude_columns=list(exclude_columns or ()),
        include_secrets=list(include_secrets or ()),
        anonymize=anonymize,
        policy=pol,
        key_source=key.source if key else None,
        where=dict(where or {}),
        closure=closure,
        since=parse_when(since, "--since"),
        until=parse_when(until, "--until"),
        date_columns=list(date_columns),
        closed=closed,
        sample=Sample.parse(sample, limit, seed),
        # --segment-file replaces the policy file's [segment] (docs/segments.md).
        segment_rules=SegmentRules.load(segment_file) if segment_file else
        SegmentRules.parse(pol.segment, f"{pol.path or 'policy'} [segment]")
        if pol is not None and pol.segment else None,
    ), key
