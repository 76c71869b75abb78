"""Value transforms for the anonymization rules, and the per-table projections that apply them.

Every keyed transform derives from HMAC-SHA256 with the export's hash key, one sub-key per
purpose (hash, fake, shift-dates), so that the same input gives the same output in every
table and every run with the same key, and unrelated outputs with another key. Values
come in as the sources convert them (str, int, bool, ``msgspec.Raw`` numbers, ISO date
strings) and go out in the same JSON-native forms.

* ``hash``: text -> 32 hex characters of the HMAC (fewer when the column is declared
  shorter, e.g. ``varchar(20)``); uuid -> a UUID made of the HMAC; integers -> a keyed
  *permutation* of the column's integer range (a 4-round Feistel network whose round
  function is the HMAC). A permutation, not a truncated hash, because a hashed ``integer``
  primary key must still fit 32 bits and stay unique: 100,000 truncated 31-bit hashes
  would collide about twice, a permutation never does. Non-negative values stay
  non-negative, and the same integer gives the same output whichever column it is in, so
  foreign keys still match.
* ``fake``: the HMAC picks entries of the word lists below (20-80x faster than Faker
  here, and stable across versions, which seeded Faker is not). Emails use reserved domains
  (``example.com``, ``*.example``) and phone numbers the fictional 555-01xx range, so a
  fake value never reaches a real person. Fake values are not guaranteed unique.
* ``mask``, ``generalize``, ``truncate``, ``redact``, ``null``: no key.

HMAC-SHA256 costs about 2 us a value here; keyed transforms remember up to
``_CACHE_SIZE`` results, which makes foreign-key columns (few distinct values, many rows)
nearly free.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import UsageError
from ..model import Table
from ..plan.request import OutputColumn, Projection
from .rules import (
    EPHEMERAL_KEY,
    PHONE_KEEP,
    REDACTED,
    SHIFT_MAX_DAYS,
    TRANSFORM_RULES,
    HashKey,
    TypeInfo,
    type_info,
)

if TYPE_CHECKING:
    from ..plan import Plan

Transform = Callable[..., Any]

#: Results remembered per keyed transform. Foreign-key columns repeat a few thousand values
#: over millions of rows; beyond this many distinct values the cache starts over.
_CACHE_SIZE = 1 << 17
_FEISTEL_ROUNDS = 4


class Keys:
    """Sub-keys derived from the export's hash key; the key itself is never kept."""

    def __init__(self, secret: bytes) -> None:
        def derive(purpose: bytes) -> bytes:
            return hmac.digest(secret, b"sqlsnap/v1/" + purpose, "sha256")

        self.hash = derive(b"hash")
        self.int = derive(b"int")
        self.fake = derive(b"fake")
        self.shift = derive(b"shift-dates")


def canonical(value: Any) -> bytes:
    """The bytes a value is hashed as: the same value gives the same bytes in every column."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, msgspec.Raw):
        return bytes(value)
    return msgspec.json.encode(value)


def _cached(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    cache: dict[Any, Any] = {}

    def cached(value: Any) -> Any:
        if value is None:
            return None
        key = (type(value), bytes(value) if isinstance(value, msgspec.Raw) else value)
        try:
            return cache[key]
        except KeyError:
            pass
        except TypeError:  # unhashable (a list from an array column)
            return fn(value)
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        out = cache[key] = fn(value)
        return out

    return cached


# --------------------------------------------------------------------------------------
# hash
# --------------------------------------------------------------------------------------


def _permutation(key: bytes, bits: int) -> Callable[[int], int]:
    """A keyed permutation of ``[0, 2**bits)``: an unbalanced Feistel network, so any width works."""
    left_bits = bits // 2
    right_bits = bits - left_bits
    tag = bits.to_bytes(1, "big")

    def permute(x: int) -> int:
        lb, rb = left_bits, right_bits
        left, right = x >> rb, x & ((1 << rb) - 1)
        for r in range(_FEISTEL_ROUNDS):
            f = int.from_bytes(hmac.digest(key, tag + bytes((r,)) + right.to_bytes(8, "big"), "sha256")[:8],
                               "big")
            left, right = right, (left + f) & ((1 << lb) - 1)
            lb, rb = rb, lb
        return (left << rb) | right

    return permute


#: Hashed integers whose value is below 2**SAFE_BITS in magnitude stay there. JSON readers that
#: parse numbers as doubles (JavaScript, jq 1.6, pandas by default) keep integers exactly only up
#: to 2**53: a bigint id hashed over all 63 bits was above it 999 times in 1000 and came out of
#: `jq` changed. Staying within 53 bits costs no uniqueness: the hash of an integer is a keyed
#: permutation, which never collides at any width. (A truncated hash would: at 53 bits, 1M
#: ids would collide with probability 5.6e-5, 10M with 0.0055, 100M with 0.42; at 63 bits
#: 5.4e-8, 5.4e-6 and 5.4e-4. n(n-1)/2 pairs over 2**bits values.)
SAFE_BITS = 53


def hash_int(keys: Keys, bits: int, unsigned: bool) -> Callable[[Any], Any]:
    span = bits if unsigned else bits - 1
    small = min(span, SAFE_BITS)
    permute_small = _permutation(keys.int, small)
    permute_wide = _permutation(keys.int, span)
    small_limit = 1 << small
    limit = 1 << span
    text = hash_text(keys, None)

    def permute(x: int) -> int:
        """A permutation of [0, limit) that keeps [0, 2**small) in itself: the wide
        permutation walked along its cycle until it leaves the small range (cycle-walking;
        it does at the first step but for one time in 2**(span - small))."""
        if x < small_limit:
            return permute_small(x)
        y = permute_wide(x)
        while y < small_limit:
            y = permute_wide(y)
        return y

    def transform(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return text(value)  # SQLite may store anything anywhere
        if 0 <= value < limit:
            return permute(value)
        if not unsigned and -limit <= value < 0:
            return -1 - permute(-1 - value)
        return int.from_bytes(hmac.digest(keys.int, canonical(value), "sha256")[:8], "big") % limit

    return transform


def hash_text(keys: Keys, length: int | None) -> Callable[[Any], Any]:
    n = 32 if not length else max(1, min(32, length))

    def transform(value: Any) -> Any:
        return hmac.digest(keys.hash, canonical(value), "sha256").hex()[:n]

    return transform


def hash_uuid(keys: Keys) -> Callable[[Any], Any]:
    def transform(value: Any) -> Any:
        raw = bytearray(hmac.digest(keys.hash, canonical(value), "sha256")[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: "custom"
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        return str(uuid.UUID(bytes=bytes(raw)))

    return transform


# --------------------------------------------------------------------------------------
# fake
# --------------------------------------------------------------------------------------

FIRST_NAMES = (
    "Aaron", "Abigail", "Adam", "Adele", "Adrian", "Agnes", "Alan", "Alba", "Albert", "Alex", "Alice",
    "Alma", "Amir", "Amy", "Andrea", "Angela", "Anton", "April", "Arthur", "Astrid", "Ben", "Bianca",
    "Boris", "Brenda", "Bruno", "Camila", "Carl", "Carmen", "Cecilia", "Charles", "Clara", "Colin",
    "Dalia", "Damian", "Daphne", "David", "Denise", "Dmitri", "Dora", "Edgar", "Edith", "Elias",
    "Elise", "Emil", "Erin", "Esme", "Eva", "Fabian", "Farah", "Felipe", "Fiona", "Frank", "Gemma",
    "George", "Gina", "Greta", "Gustav", "Hamid", "Helen", "Hector", "Hilda", "Ian", "Ida", "Igor",
    "Irene", "Ivan", "Jack", "Jade", "James", "Jana", "Jasper", "Joan", "Joel", "Josie", "Karen",
    "Karim", "Kate", "Kevin", "Lara", "Laura", "Leo", "Lena", "Leon", "Lina", "Lionel", "Lotte",
    "Louis", "Lucy", "Magnus", "Maria", "Mark", "Marta", "Martin", "Mila", "Milo", "Miriam", "Nadine",
    "Nathan", "Nico", "Nina", "Noel", "Olga", "Oscar", "Otto", "Paula", "Pedro", "Petra", "Philip",
    "Quentin", "Rachel", "Ramon", "Rebecca", "Rita", "Robert", "Ruth", "Sabine", "Sami", "Sara",
    "Simon", "Sonia", "Stefan", "Tamara", "Theo", "Tina", "Tobias", "Uma", "Ursula", "Valentin",
    "Vera", "Walter", "Wanda", "Xavier", "Yara", "Yusuf", "Zara", "Zeno",
)  # fmt: skip
LAST_NAMES = (
    "Abbott", "Acosta", "Alder", "Almeida", "Arnold", "Bauer", "Becker", "Bennett", "Berg", "Blake",
    "Bose", "Brandt", "Brennan", "Caldwell", "Campos", "Castillo", "Cole", "Conti", "Cruz", "Dahl",
    "Delgado", "Diaz", "Dixon", "Doyle", "Ellis", "Engel", "Evans", "Farrell", "Fontaine", "Ford",
    "Foster", "Frank", "Gallo", "Gomez", "Graham", "Grant", "Gray", "Gunnarsson", "Hale", "Hansen",
    "Harper", "Hayes", "Hoffman", "Holm", "Hunt", "Ivanova", "Jacobs", "Jansen", "Kaplan", "Kaya",
    "Kemp", "Klein", "Koch", "Kramer", "Lambert", "Lang", "Lindgren", "Lowe", "Lund", "Maier",
    "Marsh", "Mason", "Medina", "Meyer", "Mills", "Molina", "Morgan", "Moss", "Nash", "Navarro",
    "Nielsen", "Nolan", "Nowak", "Ortega", "Owens", "Park", "Parsons", "Pereira", "Perez", "Pike",
    "Porter", "Quinn", "Ramos", "Reyes", "Richter", "Rivera", "Roth", "Russo", "Santos", "Sauer",
    "Schulz", "Shaw", "Soto", "Stone", "Strand", "Sullivan", "Suzuki", "Svensson", "Torres", "Vega",
    "Vogel", "Wagner", "Walsh", "Ward", "Weber", "Wells", "West", "Wolf", "Young", "Zimmermann",
)  # fmt: skip
STREETS = (
    "Acorn", "Ash", "Beacon", "Birch", "Bridge", "Brook", "Castle", "Cedar", "Chapel", "Cherry",
    "Church", "Cliff", "Clover", "Copper", "Dale", "Elm", "Fern", "Field", "Forest", "Garden", "Glen",
    "Granary", "Hawthorn", "Hazel", "Heather", "Highland", "Hill", "Holly", "Juniper", "Lake",
    "Laurel", "Linden", "Maple", "Meadow", "Mill", "Oak", "Orchard", "Park", "Pine", "Poplar",
    "Quarry", "Ridge", "River", "Rose", "Spring", "Station", "Sycamore", "Valley", "Willow", "Windmill",
)  # fmt: skip
STREET_SUFFIXES = ("Street", "Road", "Avenue", "Lane", "Drive", "Way", "Close", "Court", "Place", "Terrace")
CITIES = (
    "Ashford", "Bayview", "Bellmont", "Brookfield", "Cedar Falls", "Clearwater", "Crestwood",
    "Dunmore", "Eastwick", "Elmstead", "Fairhaven", "Fernley", "Glenrock", "Greenfield", "Harborough",
    "Highbury", "Kingsbridge", "Lakeside", "Longmeadow", "Maplewood", "Marston", "Millbrook",
    "Northgate", "Oakridge", "Pinehurst", "Redcliff", "Riverton", "Rosedale", "Southport",
    "Springvale", "Stonebridge", "Westbury", "Whitby Vale", "Willowdale", "Windham", "Woodhaven",
)  # fmt: skip
COMPANY_WORDS = (
    "Apex", "Arbor", "Aurora", "Beacon", "Bright", "Cobalt", "Crest", "Delta", "Echo", "Ember",
    "Fjord", "Globe", "Harbor", "Horizon", "Juniper", "Kestrel", "Lumen", "Maple", "Nimbus", "Nova",
    "Onyx", "Orbit", "Pinnacle", "Prairie", "Quartz", "Ridge", "Sable", "Summit", "Tandem", "Vertex",
)  # fmt: skip
COMPANY_TRADES = ("Logistics", "Systems", "Foods", "Works", "Labs", "Partners", "Energy", "Health",
                  "Supply", "Engineering", "Analytics", "Builders")  # fmt: skip
COMPANY_SUFFIXES = ("Ltd", "Inc.", "GmbH", "Group", "LLC", "Co.")
#: Reserved for documentation (RFC 2606): mail to them never reaches anyone.
EMAIL_DOMAINS = ("example.com", "example.net", "example.org") + tuple(
    f"{w.lower()}.example" for w in COMPANY_WORDS)

_ASCII = re.compile(r"[^a-z]")


def _ascii(word: str) -> str:
    return _ASCII.sub("", word.lower())


def _pick(d: bytes, i: int, options: tuple[str, ...]) -> str:
    return options[int.from_bytes(d[2 * i: 2 * i + 2], "big") % len(options)]


def _num(d: bytes, i: int, n: int) -> int:
    return int.from_bytes(d[2 * i: 2 * i + 2], "big") % n


def _fake_name(d: bytes) -> str:
    return f"{_pick(d, 0, FIRST_NAMES)} {_pick(d, 1, LAST_NAMES)}"


def _fake_email(d: bytes) -> str:
    return (f"{_ascii(_pick(d, 0, FIRST_NAMES))}.{_ascii(_pick(d, 1, LAST_NAMES))}{_num(d, 2, 1000)}"
            f"@{_pick(d, 3, EMAIL_DOMAINS)}")


def _fake_phone(d: bytes) -> str:
    return f"+1-{200 + _num(d, 0, 800)}-555-01{_num(d, 1, 100):02d}"


def _fake_address(d: bytes) -> str:
    return f"{1 + _num(d, 0, 1999)} {_pick(d, 1, STREETS)} {_pick(d, 2, STREET_SUFFIXES)}"


def _fake_company(d: bytes) -> str:
    return f"{_pick(d, 0, COMPANY_WORDS)} {_pick(d, 1, COMPANY_TRADES)} {_pick(d, 2, COMPANY_SUFFIXES)}"


def _fake_username(d: bytes) -> str:
    return f"{_ascii(_pick(d, 0, FIRST_NAMES))}{_ascii(_pick(d, 1, LAST_NAMES))[:1]}{_num(d, 2, 100)}"


FAKERS: dict[str, Callable[[bytes], str]] = {
    "name": _fake_name,
    "first_name": lambda d: _pick(d, 0, FIRST_NAMES),
    "last_name": lambda d: _pick(d, 1, LAST_NAMES),
    "email": _fake_email,
    "phone": _fake_phone,
    "address": _fake_address,
    "city": lambda d: _pick(d, 4, CITIES),
    "company": _fake_company,
    "username": _fake_username,
}


def fake(keys: Keys, kind: str) -> Callable[[Any], Any]:
    make = FAKERS[kind]

    def transform(value: Any) -> Any:
        return make(hmac.digest(keys.fake, canonical(value), "sha256"))

    return transform


# --------------------------------------------------------------------------------------
# mask, generalize, truncate
# --------------------------------------------------------------------------------------


def _mask_text(value: str) -> str:
    return "*" * len(value)


def _mask_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return _mask_text(value)
    return local[0] + "***@" + domain


def _mask_phone(keep: int) -> Callable[[str], str]:
    def mask(value: str) -> str:
        digits = sum(ch.isdigit() for ch in value)
        hide = max(0, digits - keep) if digits > keep else digits  # too short: hide it all
        out = []
        for ch in value:
            if ch.isdigit() and hide:
                out.append("*")
                hide -= 1
            else:
                out.append(ch)
        return "".join(out)

    return mask


def _mask_ip(value: str) -> str:
    """IPv4 keeps its /24 network (``203.0.113.57`` -> ``203.0.113.0``), IPv6 its /48."""
    addr, slash, prefix = value.partition("/")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return _mask_text(value)
    # The network's address by masking the integer: building an ip_network from text parsed the
    # address a second time (about half of this function's time, 10% of --anonymize's on the
    # benchmark's sessions table).
    keep = _IPV4_NET if ip.version == 4 else _IPV6_NET
    return str(type(ip)(int(ip) & keep)) + slash + prefix


#: The bits _mask_ip keeps: IPv4's /24, IPv6's /48.
_IPV4_NET = ((1 << 24) - 1) << 8
_IPV6_NET = ((1 << 48) - 1) << 80


def mask(style: str, keep: int | None) -> Callable[[Any], Any]:
    fn: Callable[[str], str] = {
        "email": _mask_email, "ip": _mask_ip, "text": _mask_text,
        "phone": _mask_phone(PHONE_KEEP if keep is None else keep),
    }[style]  # fmt: skip

    def transform(value: Any) -> Any:
        if value is None:
            return None
        return fn(value if isinstance(value, str) else canonical(value).decode("utf-8", "replace"))

    return transform


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def generalize(to: str) -> Callable[[Any], Any]:
    """``1990-05-17`` -> ``1990-01-01`` (year) or ``1990-05-01`` (month); a time of day becomes
    midnight. The result is still a valid date for the column it came from."""
    keep = 4 if to == "year" else 7
    filler = "-01-01"[: 10 - keep]

    def transform(value: Any) -> Any:
        if not isinstance(value, str) or not _ISO_DATE.match(value):
            return value
        rest = value[10:]
        if rest:
            # '10:11:12.5Z' -> '00:00:00.0Z': zero the time, keep its shape and zone marker.
            end = len(rest)
            for marker in ("Z", "+", "-"):
                i = rest.find(marker, 1)
                if i > 0:
                    end = min(end, i)
            rest = re.sub(r"\d", "0", rest[:end]) + rest[end:]
        return value[:keep] + filler + rest

    return transform


def truncate(length: int) -> Callable[[Any], Any]:
    def transform(value: Any) -> Any:
        return value[:length] if isinstance(value, str) else value

    return transform


def shift_dates(keys: Keys, max_days: int, entity: str) -> Callable[[Any, Any], Any]:
    """Move dates by an offset in [-max_days, max_days], never 0, that depends only on the row's
    owner (``entity`` and the owner's value): every date of one owner moves by the same days,
    in every table, so intervals between an owner's events are kept."""
    span = 2 * max_days
    tag = entity.encode() + b"\0"

    def offset(owner: Any) -> timedelta:
        d = int.from_bytes(hmac.digest(keys.shift, tag + canonical(owner), "sha256")[:8], "big") % span
        return timedelta(days=d - max_days if d < max_days else d - max_days + 1)

    cached_offset = _cached(offset)
    no_owner = offset(None)

    def transform(value: Any, owner: Any) -> Any:
        if not isinstance(value, str) or not _ISO_DATE.match(value):
            return value
        try:
            moved = date.fromisoformat(value[:10]) + (no_owner if owner is None else cached_offset(owner))
        except (ValueError, OverflowError):
            return value  # zero dates, year 0, out of range: nothing to hide
        return moved.isoformat() + value[10:]

    return transform


# --------------------------------------------------------------------------------------
# From a plan to projections
# --------------------------------------------------------------------------------------


def build_transform(rule: str, options: Mapping[str, Any], info: TypeInfo, keys: Keys | None) -> Transform:
    """The callable for one column's rule (not for keep, drop, null and redact)."""
    if rule in ("hash", "fake", "shift-dates") and keys is None:
        raise UsageError(f"rule {rule!r} needs a hash key")  # the plan checks this first
    if rule == "hash":
        assert keys is not None
        if info.family == "int" and info.bits:
            return _cached(hash_int(keys, info.bits, info.unsigned))
        if info.family == "uuid":
            return _cached(hash_uuid(keys))
        return _cached(hash_text(keys, info.length))
    if rule == "fake":
        assert keys is not None
        return _cached(fake(keys, str(options["kind"])))
    if rule == "mask":
        return mask(str(options.get("as", "text")), options.get("keep"))
    if rule == "generalize":
        return generalize(str(options.get("to", "year")))
    if rule == "truncate":
        return truncate(int(options["length"]))
    if rule == "shift-dates":
        assert keys is not None
        return shift_dates(keys, int(options.get("max_days", SHIFT_MAX_DAYS)),
                           str(options.get("owner_entity", "")))
    raise ValueError(f"no transform for rule {rule!r}")


def projection_for(table: Table, columns: Sequence[tuple[str, str, str | None]],
                   transforms: Mapping[str, Transform]) -> Projection | None:
    """The reader's projection for ``table``. ``columns`` are the exported columns in order, as
    (name, rule, owner column or None); ``transforms`` maps ``"table.column"`` to its callable.
    None when the table is exported whole and unchanged, so readers keep their fastest path."""
    index = {c.name: i for i, c in enumerate(table.columns)}
    out = []
    for name, rule, owner in columns:
        i = index[name]
        if rule == "keep":
            out.append(OutputColumn(name, i))
        elif rule == "null":
            out.append(OutputColumn(name, None, constant=None))
        elif rule == "redact":
            out.append(OutputColumn(name, None, constant=REDACTED))
        else:
            fn = transforms[f"{table.name}.{name}"]
            if rule == "shift-dates" and owner is None:
                fn = _without_owner(fn)
            out.append(OutputColumn(name, i, fn, owner=index[owner] if owner else None))
    if [c.source for c in out] == list(range(len(table.columns))) and not any(c.transform for c in out):
        return None
    return Projection(tuple(out))


def _without_owner(fn: Transform) -> Transform:
    def transform(value: Any) -> Any:
        return fn(value, None)

    return transform


def compile_projections(plan: Plan, tables: Mapping[str, Table], key: HashKey | None,
                        dialect: str) -> dict[str, Projection]:
    """The projection of every table the plan changes. ``tables`` holds every reflected
    table: a propagated transform is built from its root column's type, which may belong to
    a table that is not exported. An ``ephemeral`` plan gets a random key that lives only
    as long as this export."""
    if key is not None:
        keys: Keys | None = Keys(key.secret)
    elif plan.key_source == EPHEMERAL_KEY:
        keys = Keys(secrets.token_bytes(32))
    else:
        keys = None
    by_root: dict[str, Transform] = {}
    projections: dict[str, Projection] = {}
    for tp in plan.tables:
        transforms: dict[str, Transform] = {}
        for cp in tp.columns:
            if cp.rule not in TRANSFORM_RULES:
                continue
            root = cp.same_as or f"{tp.name}.{cp.name}"
            if root not in by_root:
                root_table, _, root_column = root.rpartition(".")
                declared = next(c.type for c in tables[root_table].columns if c.name == root_column)
                by_root[root] = build_transform(cp.rule, cp.options, type_info(dialect, declared), keys)
            transforms[f"{tp.name}.{cp.name}"] = by_root[root]
        projection = projection_for(
            tables[tp.name], [(c.name, c.rule, c.options.get("owner")) for c in tp.columns], transforms)
        if projection is not None:
            projections[tp.name] = projection
    return projections
