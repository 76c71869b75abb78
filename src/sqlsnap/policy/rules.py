"""What may leave the database, and in which form: rules, the secret deny-list, the PII
preset, and policy files.

Everything here is pure (no database, no export): :mod:`sqlsnap.plan` applies it to the
reflected tables, :mod:`sqlsnap.anonymize` turns the chosen rules into value transforms.

* **Rules** (``RULES``): keep, drop, null, redact, hash, mask, fake, shift-dates,
  generalize, truncate; each with its options and the column types it applies to.
* **Deny-list** (:func:`secret_match`): secret-looking column names, matched on the
  words of the name (case and separators ignored), the same for every dialect. Matched
  columns are left out unless included by exact name.
* **PII preset** (:func:`pii_rule`): what ``--anonymize`` does to names, emails, phones,
  addresses, birth dates, IPs, government ids and free-text notes.
* **Policy files** (:func:`load_policy`): TOML. ``tomllib`` gives no positions, so
  :func:`_key_lines` scans the text to find the line of every key, and every error names
  its file, line and fix.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

# --------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------

#: Every rule, in the order the docs list them.
RULES = ("keep", "drop", "null", "redact", "hash", "mask", "fake", "shift-dates", "generalize", "truncate")
#: Rules whose output depends on the hash key.
KEYED_RULES = frozenset({"hash", "fake", "shift-dates"})
#: Rules that rewrite each value in Python (keep, null and redact need no code per value).
TRANSFORM_RULES = frozenset({"hash", "mask", "fake", "shift-dates", "generalize", "truncate"})
#: The plan's key source when no key was given and only the preset needs one: a random key
#: that lives as long as one export.
EPHEMERAL_KEY = "ephemeral"
#: The marker ``redact`` writes.
REDACTED = "[REDACTED]"
FAKE_KINDS = ("name", "first_name", "last_name", "email", "phone", "address", "city", "company",
              "username")  # fmt: skip
MASK_STYLES = ("email", "phone", "ip", "text")
#: Default days of ``shift-dates``: offsets are drawn from [-N, N] without 0.
SHIFT_MAX_DAYS = 90
#: Default trailing digits ``mask`` keeps of a phone number.
PHONE_KEEP = 4

#: Column families (see :func:`type_info`) each rule applies to. ``any`` is a SQLite column
#: without a declared type and ``other`` a type without a JSON form (written as text):
#: their values may be strings, so text rules are allowed and applied to strings only.
_TEXTY = frozenset({"text", "any", "other"})
_DATES = frozenset({"date", "datetime"})
RULE_FAMILIES: dict[str, frozenset[str] | None] = {
    "keep": None, "drop": None, "null": None, "hash": None,
    "redact": frozenset({"text", "any", "other", "json", "uuid", "inet", "binary", "array"}),
    "mask": _TEXTY | {"inet"},
    "fake": _TEXTY,
    "shift-dates": _TEXTY | {"date", "datetime"},
    "generalize": _TEXTY | {"date", "datetime"},
    "truncate": _TEXTY,
}  # fmt: skip

#: Options each rule accepts: name -> (type, allowed values or None).
RULE_OPTIONS: dict[str, dict[str, tuple[type, tuple[Any, ...] | None]]] = {
    "keep": {}, "drop": {}, "null": {}, "redact": {}, "hash": {},
    "mask": {"as": (str, MASK_STYLES), "keep": (int, None)},
    "fake": {"kind": (str, FAKE_KINDS)},
    "shift-dates": {"max_days": (int, None), "owner": (str, None)},
    "generalize": {"to": (str, ("year", "month"))},
    "truncate": {"length": (int, None)},
}  # fmt: skip
_REQUIRED_OPTIONS = {"truncate": ("length",)}


@dataclass(frozen=True)
class TypeInfo:
    """What a column's declared type means for the rules."""

    #: int, number, bool, text, date, datetime, time, json, binary, uuid, inet, array,
    #: other (written as its text), any (SQLite, no declared type).
    family: str
    #: Integers: the width in bits and whether negative values exist.
    bits: int | None = None
    unsigned: bool = False
    #: Strings: the declared maximum length (``varchar(36)``), if any.
    length: int | None = None


_LENGTH = re.compile(r"\((\d+)\)")


def type_info(dialect: str, declared: str) -> TypeInfo:
    """Classify a column's type as the source spells it (``character varying(255)``,
    ``int(10) unsigned``, ``VARCHAR(50)``)."""
    t = declared.strip().lower()
    m = _LENGTH.search(t)
    length = int(m.group(1)) if m else None
    if dialect == "sqlite":
        # SQLite's affinity rules (https://sqlite.org/datatype3.html#determination_of_column_affinity),
        # refined for the names ORMs use for dates, booleans and JSON.
        if not t:
            return TypeInfo("any")
        if "int" in t:
            return TypeInfo("int", 64)
        if "bool" in t:
            return TypeInfo("bool")
        if "datetime" in t or "timestamp" in t:
            return TypeInfo("datetime")
        if "date" in t:
            return TypeInfo("date")
        if "json" in t:
            return TypeInfo("json")
        if "char" in t or "clob" in t or "text" in t:
            return TypeInfo("text", length=length)
        if "blob" in t:
            return TypeInfo("binary")
        if "real" in t or "floa" in t or "doub" in t or "num" in t or "dec" in t:
            return TypeInfo("number")
        return TypeInfo("any")
    if t.endswith("[]"):
        return TypeInfo("array")
    unsigned = "unsigned" in t
    base = re.split(r"[\s(]", t, maxsplit=1)[0]
    ints = {"smallint": 16, "int2": 16, "integer": 32, "int": 32, "int4": 32, "bigint": 64, "int8": 64,
            "tinyint": 8, "mediumint": 24, "serial": 32, "bigserial": 64, "smallserial": 16}
    if base in ints:
        if dialect == "mysql" and base == "tinyint" and length == 1:
            return TypeInfo("bool")  # BOOLEAN in MySQL is tinyint(1)
        return TypeInfo("int", ints[base], unsigned)
    if base == "oid":
        return TypeInfo("int", 32, True)
    if base == "year":
        return TypeInfo("int", 16, True)
    if base in ("boolean", "bool"):
        return TypeInfo("bool")
    if base in ("numeric", "decimal", "real", "float", "double", "float4", "float8", "money"):
        return TypeInfo("number") if base != "money" else TypeInfo("other")
    if base in ("character", "char", "varchar", "text", "tinytext", "mediumtext", "longtext", "citext",
                "nchar", "nvarchar", "enum", "set", "bpchar", "name"):
        return TypeInfo("text", length=length)
    if base == "date":
        return TypeInfo("date")
    if base in ("timestamp", "datetime"):
        return TypeInfo("datetime")
    if base == "time":
        return TypeInfo("time")
    if base in ("json", "jsonb"):
        return TypeInfo("json")
    if base in ("bytea", "blob", "tinyblob", "mediumblob", "longblob", "binary", "varbinary"):
        return TypeInfo("binary")
    if base == "uuid":
        return TypeInfo("uuid")
    if base in ("inet", "cidr", "inet4", "inet6"):
        return TypeInfo("inet")
    return TypeInfo("other")


# --------------------------------------------------------------------------------------
# Names: split into words, case and separators ignored
# --------------------------------------------------------------------------------------

_CAMEL_1 = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_2 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def name_words(name: str) -> list[str]:
    """``lastLoginIP`` -> ``[last, login, ip]``; ``OAuth-Token`` -> ``[o, auth, token]``."""
    spaced = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name))
    return [w for w in _NON_WORD.split(spaced.lower()) if w]


# --------------------------------------------------------------------------------------
# The deny-list
# --------------------------------------------------------------------------------------

#: Secret terms that may be glued to the words before them: a name holds one when, joined
#: without separators up to the end of one of its words, it ends with an entry
#: (``access_token``, ``csrfToken``, ``hashed_password``, ``x-api-key``, ``stripe_client_secret``,
#: and, the term standing anywhere, ``password_hash_v2``, ``private_key_pem``). Each entry
#: also matches with an ``s`` added (``refresh_tokens``, ``recovery_codes``).
SECRET_SUFFIXES = (
    "password", "passwd", "passphrase", "passcode",
    "passwordhash", "passhash", "pwhash", "passworddigest", "passwordsalt",
    "secret", "secretkey", "secretanswer", "securityanswer",
    "token", "tokenhash", "apikey", "apikeyhash", "accesskey", "privatekey", "signingkey",
    "encryptionkey", "masterkey", "licensekey", "sessionkey", "recoverykey", "authkey", "hmackey",
    "mfakey", "otpcode", "mfacode", "recoverycode", "backupcode", "otpseed", "mfaseed",
    "rememberdigest", "resetdigest", "activationdigest",
    "credential", "connectionstring", "cookie",
)  # fmt: skip
#: Secrets when they are a whole word of the name (``salt``, ``pwd_hash``, ``otp_key``,
#: ``jwt``), but too short to match glued to other words (``basalt``, ``cwd``, ``spin``).
SECRET_WORDS = ("salt", "pwd", "otp", "totp", "hotp", "pin", "cvv", "cvc", "dsn", "jwt", "bearer")
#: A first word that makes the column a flag about a secret, not the secret: ``has_password``.
FLAG_WORDS = frozenset({"has", "is", "needs", "requires", "uses"})
#: A last word that describes the secret the name mentions, instead of holding it: its id,
#: type, count, time, state (``token_type``, ``api_key_id``, ``password_changed_at``,
#: ``otp_enabled``). Also in the plural (``token_ids``). Not ``hint`` (a password hint often
#: spells the password) nor ``value``, ``hash``, ``history``: those hold the secret. A word
#: missing here errs on the safe side: the column is left out, with its reason in the plan.
DESCRIPTOR_WORDS = frozenset({
    "id", "uuid", "type", "kind", "name", "label", "description", "prefix", "last", "scope", "version",
    "format", "algorithm", "algo", "method", "provider", "policy", "strength", "question",
    "count", "length", "size", "total", "max", "min", "limit", "used", "remaining", "attempt",
    "at", "on", "in", "out", "by", "date", "time", "ts", "timestamp", "expires", "expiry", "expiration",
    "ttl", "lifetime", "changed", "updated", "created", "issued", "rotated", "revoked", "sent", "verified",
    "enabled", "disabled", "required", "set", "status", "state", "check", "consent", "accepted",
    "url", "uri", "endpoint", "domain", "owner", "issuer", "ref", "arn",
})  # fmt: skip
#: A plural term right after one of these words counts things (``prompt_tokens``,
#: ``total_tokens``, ``max_tokens``, ``cache_read_input_tokens``): the usage columns of LLM
#: APIs. Only the word right before counts: ``cached_access_tokens`` is a secret.
NUMBER_WORDS = frozenset({
    "total", "max", "min", "num", "n", "avg", "sum", "used", "remaining", "billed", "estimated", "prompt",
    "completion", "input", "output", "cached", "reasoning", "audio", "image", "prediction", "context",
})  # fmt: skip
#: A version word (``v2``, ``2``) is dropped, and so are digits ending a word (``password2``,
#: ``api_key_last4``, ``cvv2``): they number a secret without changing what it is.
_VERSION_WORD = re.compile(r"v?\d+")
_TRAILING_DIGITS = re.compile(r"\d+$")
_SUFFIXES_LONGEST_FIRST = sorted(SECRET_SUFFIXES, key=len, reverse=True)


def _describes(word: str) -> bool:
    return word in DESCRIPTOR_WORDS or (word.endswith("s") and word[:-1] in DESCRIPTOR_WORDS)


def _term_at(joined: str, word: str, before: str | None) -> str | None:
    """The secret term ending at ``word`` (``joined`` is the name up to it), or None."""
    for entry in _SUFFIXES_LONGEST_FIRST:
        for form in (entry + "s", entry):
            if joined.endswith(form) and not (form != entry and word == form and before in NUMBER_WORDS):
                return "*" + form
    for entry in SECRET_WORDS:
        for form in (entry + "s", entry):
            if word == form and not (form != entry and before in NUMBER_WORDS):
                return form
    return None


def secret_match(name: str) -> str | None:
    """The deny-list entry ``name`` matches (``*token``, ``*tokens``, ``salt``), or None.

    Every word end of the name is tried, so a secret term matches wherever it stands
    (``password_hash_v2``, ``private_key_pem``); the last one found is reported. The name
    is no secret when it is a flag (``has_password``, ``is_secret``) or when its last word
    describes the secret (``token_type``, ``password_changed_at``, ``api_key_id``).
    """
    words = [_TRAILING_DIGITS.sub("", w) for w in name_words(name) if not _VERSION_WORD.fullmatch(w)]
    words = [w for w in words if w]
    if not words or (words[0] in FLAG_WORDS and len(words) > 1) or _describes(words[-1]):
        return None
    found = None
    joined = ""
    for i, word in enumerate(words):
        joined += word
        found = _term_at(joined, word, words[i - 1] if i else None) or found
    return found


# --------------------------------------------------------------------------------------
# The PII preset (--anonymize)
# --------------------------------------------------------------------------------------

_PEOPLE_TABLE_WORDS = frozenset({
    "user", "users", "person", "people", "persons", "customer", "customers", "contact", "contacts",
    "employee", "employees", "member", "members", "patient", "patients", "author", "authors",
    "profile", "profiles", "student", "students", "staff", "subscriber", "subscribers", "recipient",
    "recipients", "applicant", "applicants", "lead", "leads", "passenger", "passengers", "guest", "guests",
})  # fmt: skip
_COMPANY_TABLE_WORDS = frozenset({
    "company", "companies", "organization", "organizations", "organisation", "organisations", "org", "orgs",
    "business", "businesses", "vendor", "vendors", "supplier", "suppliers", "tenant", "tenants", "employer",
    "employers", "firm", "firms", "account", "accounts", "partner", "partners",
})  # fmt: skip
_PERSON_WORDS = frozenset({
    "customer", "owner", "contact", "person", "recipient", "sender", "billing", "shipping", "user",
    "employee", "patient", "cardholder", "holder", "author", "reporter", "manager", "emergency",
})  # fmt: skip
_FIRST_NAME = frozenset({"firstname", "givenname", "forename", "fname"})
_LAST_NAME = frozenset({"lastname", "surname", "familyname", "maidenname", "lname"})
_FULL_NAME = frozenset({"fullname", "displayname", "middlename", "realname", "legalname", "personname",
                        "contactname", "nickname"})  # fmt: skip
_USERNAME = frozenset({"username", "login", "userlogin", "handle", "screenname", "loginname"})
_PHONE_WORDS = frozenset({"phone", "mobile", "telephone", "tel", "cellphone", "cell", "fax", "msisdn",
                          "phonenumber", "mobilephone"})  # fmt: skip
_IP_NAMES = frozenset({"ipaddress", "ipaddr", "remoteaddr", "remoteaddress", "clientaddr", "ipv4", "ipv6"})
_BIRTH = frozenset({"dateofbirth", "dob", "birthdate", "birthday", "birthdt", "bornon", "birthdateat"})
_POSTAL = frozenset({"zip", "zipcode", "postcode", "postalcode"})
_GOVERNMENT_ID = frozenset({
    "ssn", "socialsecuritynumber", "socialsecurity", "nationalid", "nationalidnumber", "passportnumber",
    "passportno", "taxid", "taxnumber", "vatnumber", "driverslicense", "driverlicense", "licensenumber",
    "iban", "cardnumber", "creditcard", "creditcardnumber", "ccnumber", "pan", "nin", "sin",
})  # fmt: skip
_NOTES = frozenset({"note", "notes", "comment", "comments", "remark", "remarks", "bio", "biography",
                    "about", "memo"})  # fmt: skip
#: Words that make a text column free text: exported as is, with a notice that it may
#: contain personal information.
FREE_TEXT_WORDS = frozenset({
    "narrative", "content", "body", "message", "messages", "description", "details", "detail", "text",
    "summary", "feedback", "prompt", "response", "request", "completion", "transcript", "statement",
    "answer", "question", "comment", "comments", "note", "notes", "remarks", "bio", "story", "payload",
    "context", "reason", "cause", "recommendations", "explanation", "memo",
})  # fmt: skip


@dataclass(frozen=True)
class PresetRule:
    rule: str
    options: Mapping[str, Any]
    #: What was recognized: ``email``, ``name``, ``phone``, ``ip address``, ...
    what: str


def _email_like(words: list[str]) -> bool:
    """``email``, ``contact_email``, ``emailAddress``, ``e_mail``; not ``email_verified``."""
    joined = "".join(words)
    return joined.endswith(("email", "emails", "emailaddress", "mailaddress")) or joined == "mail"


def _ip_like(words: list[str]) -> bool:
    """``ip``, ``last_login_ip``, ``ip_address``, ``remote_addr``; not ``ip_country``."""
    joined = "".join(words)
    return words[-1:] == ["ip"] or joined in _IP_NAMES or joined.endswith(("ipaddress", "ipaddr"))


#: Addresses that are not where someone lives.
_NOT_STREET = frozenset({"mac", "wallet", "web", "url", "server", "host", "contract", "memory", "bitcoin",
                         "btc", "eth", "node", "ip", "email", "mail", "return"})  # fmt: skip


def pii_rule(table: str, column: str, info: TypeInfo) -> PresetRule | None:
    """The ``--anonymize`` rule for a column, from its name and type; None leaves it alone."""
    words = name_words(column)
    if not words:
        return None
    joined = "".join(words)
    text = info.family in _TEXTY
    if text and _email_like(words):
        return PresetRule("fake", {"kind": "email"}, "email")
    if info.family == "inet" or (text and _ip_like(words)):
        return PresetRule("mask", {"as": "ip"}, "IP address")
    if (info.family in _DATES | _TEXTY and joined in _BIRTH) or (info.family in _DATES and "birth" in words):
        return PresetRule("generalize", {"to": "year"}, "date of birth")
    if not text:
        return None
    if joined in _GOVERNMENT_ID:
        return PresetRule("redact", {}, "government or payment identifier")
    if words[-1] in _PHONE_WORDS or joined in _PHONE_WORDS or joined.endswith("phonenumber"):
        return PresetRule("mask", {"as": "phone"}, "phone number")
    if joined in _FIRST_NAME:
        return PresetRule("fake", {"kind": "first_name"}, "first name")
    if joined in _LAST_NAME:
        return PresetRule("fake", {"kind": "last_name"}, "last name")
    if joined in _FULL_NAME or (words[-1] == "name" and (
        (len(words) == 1 and set(name_words(table)) & _PEOPLE_TABLE_WORDS)
        or (len(words) == 2 and words[0] in _PERSON_WORDS)
    )):
        return PresetRule("fake", {"kind": "name"}, "person's name")
    if joined in _USERNAME:
        return PresetRule("fake", {"kind": "username"}, "user name")
    if not (_NOT_STREET & set(words)) and (
            words[-1] in ("address", "addr", "street") or joined.startswith(("addressline", "streetaddress"))
            or joined in ("address1", "address2")):
        return PresetRule("fake", {"kind": "address"}, "street address")
    if joined in _POSTAL:
        return PresetRule("truncate", {"length": 3}, "postal code")
    if joined in _NOTES or words[-1] in ("notes", "note", "comments", "comment", "remarks"):
        return PresetRule("mask", {"as": "text"}, "free-text notes")
    return None


def is_free_text(column: str, info: TypeInfo) -> bool:
    """Free text (narratives, messages, prompts...): may hold personal information."""
    if info.family not in _TEXTY | {"json"}:
        return False
    words = name_words(column)
    return bool(words) and words[-1] in FREE_TEXT_WORDS


def default_mask_style(column: str, info: TypeInfo) -> str:
    words = name_words(column)
    joined = "".join(words)
    if _email_like(words):
        return "email"
    if info.family == "inet" or _ip_like(words):
        return "ip"
    if words and (words[-1] in _PHONE_WORDS or joined in _PHONE_WORDS):
        return "phone"
    return "text"


def default_fake_kind(table: str, column: str, info: TypeInfo) -> str | None:
    rule = pii_rule(table, column, info)
    if rule is not None and rule.rule == "fake":
        return str(rule.options["kind"])
    words = name_words(column)
    joined = "".join(words)
    if words and words[-1] in _PHONE_WORDS:
        return "phone"
    if joined in ("city", "town"):
        return "city"
    if words and words[-1] in ("company", "organization", "organisation", "employer", "business"):
        return "company"
    if words and words[-1] == "name":
        # companies.name is a company's name; elsewhere a bare name is taken for a person's.
        return "company" if set(name_words(table)) & _COMPANY_TABLE_WORDS else "name"
    return None


# --------------------------------------------------------------------------------------
# Column patterns
# --------------------------------------------------------------------------------------

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class ColumnPattern:
    """``TABLE.COLUMN`` with globs on either side; split at the last dot, so tables of other
    schemas (``audit.events.ip``) work."""

    text: str
    table: str
    column: str

    @property
    def exact(self) -> bool:
        return not (_GLOB_CHARS & set(self.text))

    def matches(self, table: str, column: str) -> bool:
        from fnmatch import fnmatchcase

        return fnmatchcase(table, self.table) and fnmatchcase(column, self.column)


def check_glob(pattern: str, where: str) -> None:
    """fnmatch takes an unclosed ``[`` literally; here it is a mistake."""
    depth = None
    for i, ch in enumerate(pattern):
        if ch == "[" and depth is None:
            depth = i
        elif ch == "]" and depth is not None and i > depth + 1:
            depth = None
    if depth is not None:
        raise UsageError(f"{where}: malformed pattern {pattern!r}: '[' at position {depth + 1} is never "
                         "closed; close it ('[0-9]') or remove it", pattern=pattern)


def parse_column_pattern(text: str, where: str) -> ColumnPattern:
    check_glob(text, where)
    table, dot, column = text.rpartition(".")
    if not dot or not table or not column:
        raise UsageError(
            f"{where}: {text!r} is not TABLE.COLUMN; write e.g. 'users.email' or '*.{text or 'notes'}'",
            pattern=text)
    return ColumnPattern(text, table, column)


# --------------------------------------------------------------------------------------
# Policy files
# --------------------------------------------------------------------------------------

#: The policy file looked for in the current folder when no --policy is given.
DEFAULT_POLICY_FILE = "sqlsnap.toml"
HASH_KEY_ENV = "SQLSNAP_HASH_KEY"
#: Keys shorter than this are refused: an HMAC key of a few characters can be guessed by
#: trying them all against a known value.
MIN_KEY_BYTES = 16
_TOP_KEYS = ("version", "anonymize", "hash_key_file", "include_secrets", "exclude_tables",
             "exclude_columns", "rules", "segment")  # fmt: skip


@dataclass(frozen=True)
class RuleSpec:
    """One rule as written: ``"users.email" = "fake"`` or ``{ rule = "truncate", length = 200 }``."""

    pattern: ColumnPattern
    rule: str
    options: Mapping[str, Any]
    #: ``sqlsnap.toml, line 7``: quoted in errors and in the plan.
    where: str
    #: Position in the file: among globs, the last one that matches wins.
    order: int = 0


@dataclass(frozen=True)
class Named:
    """A pattern or name from the command line or the policy, with where it was given."""

    text: str
    where: str


@dataclass
class Policy:
    path: str | None = None
    anonymize: bool = False
    rules: list[RuleSpec] = field(default_factory=list)
    include_secrets: list[Named] = field(default_factory=list)
    exclude_tables: list[Named] = field(default_factory=list)
    exclude_columns: list[Named] = field(default_factory=list)
    hash_key_file: Named | None = None
    #: The ``[segment]`` table as written, for a segment's export to read (the plan checks it:
    #: docs/segments.md, "The segment file").
    segment: dict[str, Any] | None = None

    def keyed_rules(self) -> list[RuleSpec]:
        return [r for r in self.rules if r.rule in KEYED_RULES]


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


_KEY_PART = r'(?:"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|[A-Za-z0-9_-]+)'
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART = re.compile(_KEY_PART)


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = []
    for m in _PART.finditer(dotted):
        raw = m.group(0)
        if raw.startswith('"'):
            parts.append(tomllib.loads(f"k = {raw}")["k"])
        elif raw.startswith("'"):
            parts.append(raw[1:-1])
        else:
            parts.append(raw)
    return tuple(parts)


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line (1-based) where each key path is defined: ``("rules", "users.email") -> 12``.

    tomllib reports no positions, so the text is scanned for table headers and ``key =``
    lines. Good enough for error messages: lines inside multi-line strings could mislead it,
    which costs at worst a wrong line number.
    """
    lines: dict[tuple[str, ...], int] = {}
    prefix: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        if m := _HEADER.match(line):
            prefix = _split_key(m.group(1))
            lines.setdefault(prefix, number)
        elif m := _ASSIGN.match(line):
            path = prefix + _split_key(m.group(1))
            for i in range(len(prefix) + 1, len(path) + 1):
                lines.setdefault(path[:i], number)
    return lines


class _Located:
    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.lines = _key_lines(text)

    def where(self, *path: str) -> str:
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return f"{self.name}, line {self.lines[path[:n]]}"
        return self.name


#: Every option name of every rule.
_OPTION_NAMES = frozenset(opt for options in RULE_OPTIONS.values() for opt in options)


def _missing_rule(path: tuple[str, ...], item: Mapping[str, Any]) -> bool:
    """Whether ``item``, a table without a ``rule`` key, is one rule's options that forgot it
    (``email = { length = 3 }``) rather than a table of rules (``[rules.users]``): it names a
    column (``users.email``, not just ``users``) and holds an option whose value no rule
    table could hold (``length = 3``, ``kind = "name"``; not ``kind = "hash"``, the rule of a
    column named kind)."""
    names_a_column = len(path) > 1 or "." in path[0]
    return names_a_column and any(
        key in _OPTION_NAMES and not isinstance(value, dict) and value not in RULES
        for key, value in item.items())


def _flatten_rules(
    value: Mapping[str, Any], path: tuple[str, ...] = ()
) -> Iterable[tuple[tuple[str, ...], Any]]:
    """``[rules.users] email = "fake"`` and ``"users.email" = "fake"`` both give
    ``("users", "email") -> "fake"``; a table with a ``rule`` key is one rule's options, and
    so is one that forgot it (:func:`_missing_rule`), for :func:`_parse_rule` to say so."""
    for key, item in value.items():
        if isinstance(item, dict) and "rule" not in item and not _missing_rule(path + (key,), item):
            yield from _flatten_rules(item, path + (key,))
        else:
            yield path + (key,), item


def parse_policy(text: str, name: str = DEFAULT_POLICY_FILE, *, folder: str | None = None) -> Policy:
    """Parse and check a policy file's text (everything that needs no database)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{name}: not valid TOML: {exc}; see docs/policy.md for the format",
                         path=name) from None
    loc = _Located(name, text)
    policy = Policy(path=name)
    for key in data:
        if key not in _TOP_KEYS:
            raise UsageError(f"{loc.where(key)}: unknown setting {key!r}; {_suggest(key, _TOP_KEYS)}"
                             f"settings are: {', '.join(_TOP_KEYS)}", path=name)
    version = data.get("version", 1)
    if version != 1:
        raise UsageError(f"{loc.where('version')}: unsupported policy version {version!r}; use version = 1",
                         path=name)
    anonymize = data.get("anonymize", False)
    if not isinstance(anonymize, bool):
        raise UsageError(f"{loc.where('anonymize')}: anonymize must be true or false", path=name)
    policy.anonymize = anonymize
    segment = data.get("segment")
    if segment is not None and not isinstance(segment, dict):
        raise UsageError(f"{loc.where('segment')}: segment must be a table: [segment]; see docs/segments.md",
                         path=name)
    policy.segment = segment

    def names(key: str) -> list[Named]:
        value = data.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{loc.where(key)}: {key} must be a list of strings, "
                             f"e.g. {key} = [\"{'debug_*' if key == 'exclude_tables' else 'users.notes'}\"]",
                             path=name)
        return [Named(v, loc.where(key)) for v in value]

    policy.include_secrets = names("include_secrets")
    policy.exclude_tables = names("exclude_tables")
    policy.exclude_columns = names("exclude_columns")
    for n in policy.exclude_tables:
        check_glob(n.text, n.where)
    for n in policy.exclude_columns:
        parse_column_pattern(n.text, n.where)
    for n in policy.include_secrets:
        check_secret_name(n.text, n.where)
    if "hash_key_file" in data:
        path = data["hash_key_file"]
        if not isinstance(path, str) or not path:
            raise UsageError(f"{loc.where('hash_key_file')}: hash_key_file must be a file path", path=name)
        path = os.path.expanduser(path)
        if folder and not os.path.isabs(path):
            path = os.path.join(folder, path)
        policy.hash_key_file = Named(path, loc.where("hash_key_file"))

    rules = data.get("rules", {})
    if not isinstance(rules, dict):
        raise UsageError(f"{loc.where('rules')}: [rules] must be a table of \"TABLE.COLUMN\" = \"RULE\"",
                         path=name)
    for order, (path, spec) in enumerate(_flatten_rules(rules)):
        where = loc.where("rules", *path)
        policy.rules.append(_parse_rule(".".join(path), spec, where, order))
    return policy


def _parse_rule(key: str, spec: Any, where: str, order: int) -> RuleSpec:
    pattern = parse_column_pattern(key, where)
    if isinstance(spec, str):
        rule, options = spec, {}
    elif isinstance(spec, dict):
        options = dict(spec)
        if "rule" not in options:
            fitting = [r for r in RULES if set(options) <= set(RULE_OPTIONS[r])]
            written = ", ".join(f"{k} = \"{v}\"" if isinstance(v, str) else f"{k} = {v}"
                                for k, v in options.items())
            raise UsageError(f"{where}: the rule for {key!r} has options ({', '.join(options)}) but no "
                             f"'rule' key; write \"{key}\" = {{ rule = "
                             f"\"{fitting[0] if len(fitting) == 1 else 'RULE'}\", {written} }}")
        rule = options.pop("rule")
    else:
        raise UsageError(f"{where}: the rule for {key!r} must be a rule name (\"hash\") or a table "
                         "({ rule = \"truncate\", length = 200 })")
    if not isinstance(rule, str) or rule not in RULES:
        alias = str(rule).replace("_", "-").lower()
        hint = f"did you mean {alias!r}? " if alias in RULES else _suggest(str(rule), RULES)
        raise UsageError(f"{where}: unknown rule {rule!r} for {key!r}; {hint}rules are: {', '.join(RULES)}",
                         rule=rule)
    allowed = RULE_OPTIONS[rule]
    for opt, value in options.items():
        if opt not in allowed:
            valid = ", ".join(allowed) or "none"
            raise UsageError(f"{where}: rule {rule!r} has no option {opt!r}; {_suggest(opt, allowed)}"
                             f"its options are: {valid}")
        kind, choices = allowed[opt]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UsageError(f"{where}: option {opt!r} of rule {rule!r} must be "
                             f"{'a whole number' if kind is int else 'a string'}")
        if choices is not None and value not in choices:
            raise UsageError(f"{where}: {opt} = {value!r} is not one of: {', '.join(map(str, choices))}")
        if isinstance(value, int) and value < (1 if opt in ("length", "max_days") else 0):
            raise UsageError(f"{where}: option {opt!r} must be at least {1 if opt != 'keep' else 0}")
    for opt in _REQUIRED_OPTIONS.get(rule, ()):
        if opt not in options:
            raise UsageError(f"{where}: rule {rule!r} needs option {opt!r}; write "
                             f"\"{key}\" = {{ rule = \"{rule}\", {opt} = 200 }}")
    return RuleSpec(pattern, rule, options, where, order)


def check_secret_name(text: str, where: str) -> None:
    """A secret column is included by its exact name only: the hints name that form (the
    general one, parse_column_pattern's, suggested a glob that this then refused)."""
    if _GLOB_CHARS & set(text):
        raise UsageError(f"{where}: {text!r} is a pattern; secrets are exported only when named exactly "
                         "(TABLE.COLUMN, e.g. sessions.session_token)", pattern=text)
    table, dot, column = text.rpartition(".")
    if not dot or not table or not column:
        example = f"users.{text}" if not dot and text else "sessions.session_token"
        raise UsageError(f"{where}: {text!r} is not TABLE.COLUMN; secrets are exported only when named "
                         f"exactly: write e.g. '{example}' (sqlsnap plan lists the secret columns it "
                         "leaves out)", pattern=text)
    parse_column_pattern(text, where)


def load_policy(path: str) -> Policy:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise UsageError(f"policy file {path} does not exist; check --policy", path=path) from None
    except OSError as exc:
        raise UsageError(f"cannot read policy file {path}: {exc.strerror}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text; save the policy file as UTF-8", path=path) from None
    return parse_policy(text, path, folder=os.path.dirname(os.path.abspath(path)))


# --------------------------------------------------------------------------------------
# The hash key
# --------------------------------------------------------------------------------------

KEY_HINT = (f"set {HASH_KEY_ENV} (e.g. export {HASH_KEY_ENV}=$(openssl rand -hex 32)) or give "
            "--hash-key-file FILE")


@dataclass(frozen=True)
class HashKey:
    """The key for hash, fake and shift-dates. ``source`` says where it came from and is the
    only part that is ever shown or recorded."""

    secret: bytes = field(repr=False)
    source: str


def _checked(key: bytes, source: str) -> HashKey:
    if len(key) < MIN_KEY_BYTES:
        raise UsageError(f"the hash key from {source} is {len(key)} bytes; use at least {MIN_KEY_BYTES} "
                         f"(e.g. openssl rand -hex 32)")
    return HashKey(key, source)


def read_key_file(path: str, where: str | None = None) -> HashKey:
    label = f"key file {path}" + (f" ({where})" if where else "")
    try:
        with open(path, "rb") as fh:
            key = fh.read().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the hash key file {path}: {exc.strerror}"
                         + (f" (given at {where})" if where else ""), path=path) from None
    return _checked(key, label)


def resolve_key(
    hash_key: bytes | str | None = None,
    hash_key_file: str | None = None,
    policy: Policy | None = None,
    environ: Mapping[str, str] | None = None,
) -> HashKey | None:
    """The key from, in this order: the argument, ``--hash-key-file``, ``$SQLSNAP_HASH_KEY``,
    the policy's ``hash_key_file``. None when there is none."""
    env = os.environ if environ is None else environ
    if hash_key is not None:
        secret = hash_key.encode() if isinstance(hash_key, str) else bytes(hash_key)
        return _checked(secret, "the hash_key argument")
    if hash_key_file:
        return read_key_file(hash_key_file)
    if env.get(HASH_KEY_ENV):
        return _checked(env[HASH_KEY_ENV].encode(), HASH_KEY_ENV)
    if policy is not None and policy.hash_key_file is not None:
        return read_key_file(policy.hash_key_file.text, policy.hash_key_file.where)
    return None


def require_key_for(rules: Sequence[RuleSpec], key: HashKey | None) -> None:
    """Fail before reading any data when the policy file asks for keyed rules without a key."""
    if key is None and rules:
        r = rules[0]
        raise UsageError(f"{r.where}: rule {r.rule!r} for {r.pattern.text!r} needs a hash key; {KEY_HINT}")
