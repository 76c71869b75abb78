"""The bundled sample database behind ``sqlsnap demo``.

It models a multi-tenant incident-management SaaS: companies' staff report workplace
incidents, an AI assistant helps write the narrative, asks clarifying questions and
classifies the event, and every AI call is logged. The schema is chosen to exercise what
the exporter and the safety layer must handle: composite and self-referencing keys,
uuid, json, numeric, date, timestamptz, inet and binary columns, personal data (emails,
phones, birth dates, IPs), secrets (password hashes, session and OAuth tokens) and large
free text.

Design choices, and why:

* **Deterministic.** Every random value comes from a :class:`random.Random` seeded with a
  string (seeding from ``str`` hashes it with SHA-512, so it is stable across processes
  and platforms, unlike ``hash()``), and every time is an offset from :data:`_EPOCH`, never
  the clock. The same scale therefore gives the same data on every run and every dialect,
  which makes exports diffable and benchmarks comparable.
* **A small plan first, text later.** :class:`_World` decides who and what exists
  (companies, sites, users, and per incident its people, timeline and how many children of
  each kind it has) without producing any text. It is a few MB at scale 100, lets every
  table be generated independently and lazily with consistent foreign keys, and lets
  :func:`table_row_counts` predict counts without generating rows.
* **Dialect-neutral schema and rows.** Columns are described by kinds (``uuid``,
  ``numeric:10,2``, ``timestamptz``), rendered into each dialect's types by
  :func:`sqlsnap.targets.column_type`. Generators yield tuples of aware UTC datetimes,
  ``date``, ``Decimal``, ``bool``, ``bytes`` and ``str`` (uuid, json and IPs as text).
* **No SQL here.** Tables are created, filled and given their foreign keys by the
  dialect's :class:`sqlsnap.targets.Target`, the write side ``sqlsnap restore`` shares
  (COPY for PostgreSQL, ``executemany`` batches for MySQL/MariaDB and SQLite, and only the
  values a driver cannot take converted). Rows stream from generators, so memory stays flat
  whatever the scale.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from math import gcd
from typing import Any

from .errors import UsageError
from .model import Column, ForeignKey, Table
from .targets import attach, column_type

__all__ = ["DEMO_TABLES", "build", "table_row_counts"]

# --------------------------------------------------------------------------------------
# Sizes. Everything but ai_prompts grows with the number of companies, so row counts and
# bytes are linear in ``scale``: scale 1 is ~10k rows / ~10 MB of JSON, scale 100 ~1M / ~1 GB.
# --------------------------------------------------------------------------------------

_COMPANIES_PER_SCALE = 3
_SITES_PER_COMPANY = 4
_USERS_PER_COMPANY = 20
_INCIDENTS_PER_COMPANY = 100
_DEBUG_LOGS_PER_COMPANY = 750
#: Inclusive ranges drawn per parent.
_SESSIONS_PER_USER = (2, 8)
_EXTRA_PARTICIPANTS = (0, 4)
_QUESTIONS_PER_INCIDENT = (0, 5)
_CLASSIFICATIONS_PER_INCIDENT = (1, 3)
_DRAFTS_PER_NARRATIVE = (1, 2)
_OAUTH_SHARE = 0.75
_ANSWERED_SHARE = 0.8
_FOLLOW_UP_SHARE = 0.85
_AI_RETRY_SHARE = 0.08
#: Reporters who leave the title empty get one suggested.
_UNTITLED_SHARE = 0.5

#: Narrative lengths in characters. The assembler stops at the first sentence boundary past
#: a drawn target, so targets stay one sentence short of the maximum.
_NARRATIVE_MIN_CHARS = 300
_NARRATIVE_MAX_CHARS = 3000
_MAX_SENTENCE_CHARS = 240
_NARRATIVE_TARGETS = {  # (low, mode, high) of a triangular distribution, per phase
    "initial": (_NARRATIVE_MIN_CHARS, 700, 1800),
    "follow_up": (_NARRATIVE_MIN_CHARS, 600, 1500),
    "final": (900, 1600, _NARRATIVE_MAX_CHARS - _MAX_SENTENCE_CHARS - 2),
}
_DESCRIPTION_CHARS = (120, 400, 1200)
_AI_USER_CONTENT_CHARS = (200, 400, 1000)
_AI_COMPLETION_CHARS = (150, 350, 1000)
#: Filled variants of each sentence template, per category and phase.
_VARIANTS_PER_TEMPLATE = 8
_PARAGRAPH_BREAK_SHARE = 0.2

_MS_PER_MINUTE = 60_000
_MS_PER_HOUR = 60 * _MS_PER_MINUTE
_MS_PER_DAY = 24 * _MS_PER_HOUR

#: "Now" for the demo: all times are at or before it, none depends on the clock.
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_SEED = "sqlsnap-demo/1"
_DIALECTS = ("postgresql", "mysql", "sqlite")


def _rng(stream: str) -> random.Random:
    """An independent, reproducible random stream; one per table keeps tables independent."""
    return random.Random(f"{_SEED}/{stream}")


def _at(ms: int) -> datetime:
    """The instant ``ms`` milliseconds after the epoch (negative: before it)."""
    return _EPOCH + timedelta(milliseconds=ms)


def _ago(rng: random.Random, low_days: float, high_days: float) -> int:
    """A random offset in ms between ``high_days`` and ``low_days`` before the epoch."""
    return -rng.randint(int(low_days * _MS_PER_DAY), int(high_days * _MS_PER_DAY))


def _fixed(units: int, places: int) -> Decimal:
    """``units`` × 10^-places as an exact Decimal (``_fixed(1250, 2)`` is 12.50)."""
    return Decimal(units) / Decimal(10**places)


def _uuid(rng: random.Random) -> str:
    """A version-4-shaped UUID drawn from ``rng`` (``uuid.uuid4`` would not be reproducible)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: Any) -> str:
    """Compact JSON text; non-ASCII kept as is so exports see real UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _ip(rng: random.Random) -> str:
    """Addresses from the documentation and private ranges only, IPv4 and IPv6."""
    roll = rng.random()
    if roll < 0.15:
        return (
            f"2001:db8:{rng.randrange(0x10000):x}:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}"
        )
    if roll < 0.3:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"


_ASCII_FOLD = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "ß": "ss", "'": "", " ": "-"})


def _ascii(text: str) -> str:
    """Lower-case ASCII for emails and slugs (``Sørensen`` → ``sorensen``)."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    return folded.encode("ascii", "ignore").decode("ascii").lower()


# --------------------------------------------------------------------------------------
# Vocabulary. Small on purpose: variety comes from combining it.
# --------------------------------------------------------------------------------------

_FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Amara", "Mateo", "Sofia", "Lucas", "Aisha", "Ethan",
    "Chloé", "Jonas", "Priya", "Diego", "Hannah", "Kenji", "Fatima", "Oliver", "Zoë", "Rafael",
    "Ingrid", "Marcus", "Leila", "Tomás", "Grace", "Mohammed", "Elena", "Samuel", "Yuki", "Nadia",
    "Daniel", "Isabella", "Kwame", "Freya", "Arjun", "Lucía", "Benjamin", "Mei", "Omar", "Clara",
    "Henrik", "Ava", "Gabriel", "Sienna", "Ravi", "Maya", "Felix", "Nora", "Andrés", "Leah",
    "Viktor", "Esther", "Hugo", "Amelia", "Tariq", "Julia", "Sven", "Rosa", "Isaac", "Ana",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Johnson", "García", "Müller", "Nguyen", "Kowalski", "O'Brien", "Rossi", "Kim", "Patel",
    "Andersen", "Dubois", "Silva", "Tanaka", "Okafor", "Martínez", "Novak", "Schmidt", "Haddad",
    "Jensen", "Lopez", "Murphy", "Fischer", "Chen", "Singh", "Costa", "Larsen", "Moreau", "Ibrahim",
    "Walker", "Hughes", "Bakker", "Kaur", "Ferreira", "Yamamoto", "Clarke", "Petrov", "Lindqvist",
    "Romero", "Adeyemi", "Brooks", "Sato", "Novotná", "Wright", "Ahmed", "Bianchi", "Carter",
    "Eriksen", "Duarte", "Mensah", "Hall", "Vargas", "Keller", "Popescu", "Reid", "Nakamura",
    "Horváth", "Flores", "Byrne", "Sørensen",
)  # fmt: skip
_COMPANY_PREFIXES = (
    "Northwind", "Bluewater", "Ironbridge", "Summit", "Redwood", "Harbor", "Granite", "Silverline",
    "Evergreen", "Keystone", "Pioneer", "Crescent", "Atlas", "Meridian", "Falcon", "Cedar",
    "Lakeshore", "Riverside", "Sterling", "Orion",
)  # fmt: skip
#: (name word, industry, site kinds)
_SECTORS = (
    ("Logistics", "logistics", ("Distribution Center", "Cross-Dock", "Depot")),
    ("Construction", "construction", ("Site Office", "Yard", "Project Site")),
    ("Foods", "food processing", ("Plant", "Cold Store", "Bakery")),
    ("Manufacturing", "manufacturing", ("Plant", "Assembly Hall", "Workshop")),
    ("Health", "healthcare", ("Clinic", "Care Home", "Hospital Wing")),
    ("Energy", "energy", ("Substation", "Field Office", "Wind Farm")),
    ("Warehousing", "warehousing", ("Warehouse", "Fulfilment Center", "Depot")),
    ("Hospitality", "hospitality", ("Hotel", "Kitchen", "Conference Center")),
    ("Retail", "retail", ("Store", "Outlet", "Distribution Center")),
    ("Mining", "mining", ("Quarry", "Processing Plant", "Workshop")),
)
_COMPANY_SUFFIXES = ("Ltd", "Inc.", "GmbH", "Group", "Co.", "LLC", "AS", "S.A.")
_PLANS = (("free", 0), ("team", 1200), ("business", 2900), ("enterprise", 4500))  # cents per seat
#: (city, country, time zone, latitude, longitude, dialling code)
_CITIES = (
    ("Manchester", "GB", "Europe/London", 53.4808, -2.2426, "44"),
    ("Leeds", "GB", "Europe/London", 53.8008, -1.5491, "44"),
    ("Dublin", "IE", "Europe/Dublin", 53.3498, -6.2603, "353"),
    ("Rotterdam", "NL", "Europe/Amsterdam", 51.9244, 4.4777, "31"),
    ("Hamburg", "DE", "Europe/Berlin", 53.5511, 9.9937, "49"),
    ("Lyon", "FR", "Europe/Paris", 45.7640, 4.8357, "33"),
    ("Barcelona", "ES", "Europe/Madrid", 41.3874, 2.1686, "34"),
    ("Milan", "IT", "Europe/Rome", 45.4642, 9.1900, "39"),
    ("Gothenburg", "SE", "Europe/Stockholm", 57.7089, 11.9746, "46"),
    ("Aarhus", "DK", "Europe/Copenhagen", 56.1629, 10.2039, "45"),
    ("Warsaw", "PL", "Europe/Warsaw", 52.2297, 21.0122, "48"),
    ("Chicago", "US", "America/Chicago", 41.8781, -87.6298, "1"),
    ("Houston", "US", "America/Chicago", 29.7604, -95.3698, "1"),
    ("Atlanta", "US", "America/New_York", 33.7490, -84.3880, "1"),
    ("Seattle", "US", "America/Los_Angeles", 47.6062, -122.3321, "1"),
    ("Toronto", "CA", "America/Toronto", 43.6532, -79.3832, "1"),
    ("Melbourne", "AU", "Australia/Melbourne", -37.8136, 144.9631, "61"),
    ("Auckland", "NZ", "Pacific/Auckland", -36.8485, 174.7633, "64"),
    ("São Paulo", "BR", "America/Sao_Paulo", -23.5505, -46.6333, "55"),
    ("Monterrey", "MX", "America/Monterrey", 25.6866, -100.3161, "52"),
    ("Johannesburg", "ZA", "Africa/Johannesburg", -26.2041, 28.0473, "27"),
    ("Singapore", "SG", "Asia/Singapore", 1.3521, 103.8198, "65"),
)
_STREETS = ("Harbour Road", "Mill Lane", "Station Street", "Industrial Way", "Canal Street",
            "Park Avenue", "Quarry Road", "Commerce Drive", "Dock Street", "Elm Grove")  # fmt: skip
_JOB_TITLES = {
    "admin": ("Operations Director", "Managing Director", "Chief Operating Officer"),
    "manager": ("Site Manager", "Warehouse Manager", "Shift Manager", "Production Manager"),
    "safety_officer": ("Health & Safety Officer", "EHS Coordinator", "Safety Lead"),
    "staff": ("Warehouse Operative", "Forklift Driver", "Machine Operator", "Picker",
              "Maintenance Technician", "Cleaner", "Driver", "Nurse", "Chef", "Sales Associate",
              "Quality Inspector", "Electrician", "Site Labourer"),
}  # fmt: skip
_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "IncidentApp/4.12.0 (iOS 18.1; iPad13,4)",
    "IncidentApp/4.11.2 (Android 13; Pixel 7)",
)
_AREAS = ("loading dock", "cold store", "aisle 14", "break room", "stairwell B", "mezzanine",
          "kitchen", "car park", "packing line 3", "reception", "workshop", "plant room",
          "goods-in bay", "ward 2 corridor", "roof access", "wash bay", "staff canteen", "yard")  # fmt: skip
_PPE = ("safety boots", "cut-resistant gloves", "a hi-vis vest", "safety glasses", "a hard hat",
        "hearing protection", "a face shield", "a respirator")  # fmt: skip
_WEATHER = ("dry and overcast", "heavy rain", "light drizzle", "clear and sunny", "icy, below freezing",
            "strong wind", "hot, around 32 °C")  # fmt: skip
_INJURY_CLASSES = (
    "a first-aid case",
    "a recordable injury",
    "a lost-time injury",
    "a near miss with no injury",
)
_LIKELIHOODS = ("low", "moderate", "high")


@dataclass(frozen=True)
class _Category:
    """An incident type and the words that make its texts specific to it."""

    key: str
    label: str
    titles: tuple[str, ...]  # may use {area} and {equipment}
    events: tuple[str, ...]  # past-tense clause: "slipped on ..."
    hazards: tuple[str, ...]
    equipment: tuple[str, ...]
    injuries: tuple[str, ...]
    body_parts: tuple[str, ...]
    controls: tuple[str, ...]


_CATEGORIES = (
    _Category(
        "slip_trip_fall", "Slip, trip or fall",
        ("Slip on wet floor in {area}", "Trip over trailing cable near {equipment}",
         "Fall from step ladder in {area}"),
        ("slipped on a patch of spilled oil", "tripped over a trailing extension cable",
         "lost footing on the second step of a ladder", "slipped on condensation near the doorway"),
        ("standing water from a leaking roof", "a trailing extension cable", "loose floor matting"),
        ("step ladder", "pallet jack", "floor scrubber"),
        ("a sprained ankle", "bruising to the hip", "a wrist fracture"),
        ("ankle", "knee", "wrist", "lower back"),
        ("install anti-slip matting at the entrance", "route cables overhead with cable trays",
         "add the area to the hourly floor inspection round", "replace the ladder with a platform step"),
    ),
    _Category(
        "manual_handling", "Manual handling",
        ("Back strain lifting boxes in {area}", "Shoulder injury moving {equipment}"),
        ("felt a sharp pain while lifting a 25 kg box", "strained a shoulder pulling a loaded cage",
         "twisted while lowering a drum onto a pallet"),
        ("boxes stacked above shoulder height", "a cage trolley with a sticking wheel",
         "an awkward lift in a narrow aisle"),
        ("cage trolley", "pallet stacker", "drum trolley"),
        ("a lower back strain", "a shoulder strain", "a pulled muscle in the neck"),
        ("lower back", "shoulder", "neck"),
        ("limit stacking height to shoulder level", "provide a vacuum lifter for heavy items",
         "refresh manual handling training for the team", "repair or replace faulty trolley wheels"),
    ),
    _Category(
        "vehicle", "Vehicle or forklift",
        ("Forklift collision with racking in {area}", "Pedestrian near miss with {equipment}"),
        ("was clipped by a reversing forklift", "had to step back as a reach truck turned the corner",
         "collided with the racking while reversing"),
        ("a blind corner without a convex mirror", "pedestrians and forklifts sharing one aisle",
         "a reversing alarm that was not working"),
        ("counterbalance forklift", "reach truck", "delivery van"),
        ("bruising to the leg", "a crushed toe", "no physical injury but significant shock"),
        ("foot", "leg", "hand"),
        ("mark separate pedestrian walkways in yellow", "fit a convex mirror at the corner",
         "check reversing alarms at the start of every shift", "introduce a one-way system in the aisle"),
    ),
    _Category(
        "chemical", "Chemical exposure",
        ("Chemical splash while decanting in {area}", "Fumes released near {equipment}"),
        ("was splashed while decanting a cleaning concentrate", "inhaled fumes from an unlabelled container",
         "got degreaser on bare skin while cleaning a part"),
        ("an unlabelled spray bottle", "a decanting station without a funnel",
         "poor ventilation in the room"),
        ("parts washer", "dosing pump", "chemical store cabinet"),
        ("skin irritation", "watering and stinging eyes", "a headache and nausea"),
        ("eyes", "forearm", "face"),
        ("provide pre-diluted products instead of concentrate",
         "install an eyewash station next to the store",
         "label every secondary container", "service the extraction fan"),
    ),
    _Category(
        "cut", "Cut or laceration",
        ("Hand laceration from box cutter in {area}", "Cut on sharp edge of {equipment}"),
        ("cut a hand with a box cutter while opening cartons", "caught a forearm on a sharp metal edge",
         "was cut by broken glass while clearing a spill"),
        ("retractable knives without auto-return blades", "an unguarded sheet metal edge",
         "broken glass left in a bin bag"),
        ("box cutter", "shelving unit", "band saw"),
        ("a laceration needing four stitches", "a shallow cut to the thumb", "a deep cut to the palm"),
        ("hand", "thumb", "forearm"),
        ("switch to safety knives with auto-retracting blades", "fit edge protectors to the shelving",
         "issue cut-resistant gloves for unpacking", "provide a sharps bin for broken glass"),
    ),
    _Category(
        "electrical", "Electrical",
        ("Electric shock from damaged plug in {area}", "Sparks from {equipment} during use"),
        ("received a mild shock from a damaged plug", "saw sparks and smelled burning from the socket",
         "touched an exposed conductor behind a panel"),
        ("a cracked plug casing", "an overloaded extension lead", "a panel left open after maintenance"),
        ("kettle", "battery charger", "distribution board"),
        ("tingling in the fingers", "a small burn on the fingertip", "no injury"),
        ("hand", "fingers", "arm"),
        ("remove damaged equipment from service immediately",
         "schedule portable appliance testing for the site",
         "lock and tag panels after maintenance", "ban daisy-chained extension leads"),
    ),
    _Category(
        "fire", "Fire or smoke",
        ("Small fire in bin in {area}", "Smoke from overheating {equipment}"),
        ("noticed smoke coming from a waste bin", "saw the motor of a machine start to smoke",
         "used an extinguisher on a small fire"),
        ("hot ashes emptied into a plastic bin", "a blocked cooling vent",
         "cardboard stored next to a heater"),
        ("conveyor motor", "deep fryer", "space heater"),
        ("smoke inhalation", "a minor burn to the hand", "no injury"),
        ("lungs", "hand", "face"),
        ("provide metal bins with lids", "clean cooling vents weekly",
         "keep a one-metre clearance around heaters",
         "run a fire drill for the night shift"),
    ),
    _Category(
        "near_miss", "Near miss",
        ("Falling object near miss in {area}", "Near miss with unsecured load on {equipment}"),
        ("narrowly avoided a box falling from the top shelf",
         "stopped just before walking under a suspended load",
         "noticed a pallet leaning out of the racking"),
        ("an unsecured load on the top beam", "a missing shelf safety net", "a pallet stacked unevenly"),
        ("overhead crane", "pallet racking", "mobile elevating work platform"),
        ("no injury", "no injury but the person was shaken", "no injury"),
        ("head", "shoulder", "none"),
        ("fit anti-collapse mesh to the racking", "inspect racking monthly",
         "enforce an exclusion zone under lifts",
         "add load-securing checks to the loading procedure"),
    ),
    _Category(
        "violence", "Workplace violence or aggression",
        ("Verbal abuse from visitor at {area}", "Aggressive customer incident at {area}"),
        ("was shouted at and threatened by a visitor", "was pushed by a customer who was refused entry",
         "received threatening messages after a dispute"),
        ("lone working at the counter", "no panic alarm at the front desk", "a long queue with no updates"),
        ("front desk", "panic alarm", "CCTV camera"),
        ("emotional distress", "bruising to the arm", "no physical injury"),
        ("arm", "shoulder", "none"),
        ("install a panic alarm at reception", "avoid lone working at peak times",
         "offer de-escalation training", "provide confidential counselling to the employee"),
    ),
    _Category(
        "equipment", "Equipment failure",
        ("Guard failure on {equipment} in {area}", "Hydraulic leak on {equipment}"),
        ("saw the guard interlock fail while the machine was running",
         "noticed hydraulic fluid spraying from a hose",
         "had the emergency stop fail to respond on the first press"),
        ("a worn interlock switch", "a perished hydraulic hose", "an overdue maintenance schedule"),
        ("packaging machine", "scissor lift", "conveyor belt"),
        ("no injury", "a bruised hand", "hydraulic fluid in the eye"),
        ("hand", "eye", "arm"),
        ("replace the interlock switch and test weekly", "move the machine to a planned maintenance schedule",
         "add a pre-use checklist for the operator", "replace all hoses older than five years"),
    ),
)  # fmt: skip

_STATUSES = ("open", "triage", "investigating", "resolved", "closed")
_STATUS_WEIGHTS = (5, 5, 15, 25, 50)
#: Gaps (ms, inclusive range) before moving from status i to status i + 1.
_STAGE_GAPS = (
    (_MS_PER_HOUR, 24 * _MS_PER_HOUR),
    (_MS_PER_HOUR, 72 * _MS_PER_HOUR),
    (2 * _MS_PER_DAY, 30 * _MS_PER_DAY),
    (_MS_PER_DAY, 14 * _MS_PER_DAY),
)
_SEVERITIES = (("low", 40), ("medium", 35), ("high", 18), ("critical", 7))
_PARTICIPANT_ROLES = ("witness", "injured_party", "first_aider", "supervisor")
_PHASES = ("initial", "follow_up", "final")
_TAXONOMIES = ("event_type", "body_part", "hazard_class")

# Sentence templates. Placeholders are filled from a category's words when the sentence
# pools are built; incident-specific names and places only go in the opening sentences.
_SENTENCES = {
    "initial": (
        "The employee {event} while working near the {equipment}.",
        "According to the reporter, {hazard} had been there for some time before the incident.",
        "A coworker who was nearby heard a shout and came over to help.",
        "The injured person reported {injury} and pain in the {body_part}.",
        "First aid was given on site by a trained first aider within a few minutes.",
        "The area was busy at the time, with several deliveries in progress.",
        "Lighting in the area was adequate, although one fixture was flickering.",
        "The employee stated that they were wearing {ppe} at the time.",
        "Nobody had reported {hazard} to the shift supervisor earlier in the day.",
        "The supervisor was informed within ten minutes and the area was cordoned off.",
        "Photos of the scene were taken on a company phone before anything was moved.",
        "The employee was able to continue working after a short break.",
        "The {equipment} was taken out of service pending inspection.",
        "It was the last hour of a twelve-hour shift and the team was two people short.",
        "Music from a radio made it hard to hear the warnings.",
        'The employee said: "I didn\'t see it until it was too late."',
        "Weather conditions at the time: {weather}.",
        "It happened shortly after the pre-shift briefing.",
        "The employee had completed the relevant training {months} months earlier.",
        "Two colleagues {event} in the same spot last winter, according to the team.",
    ),
    "follow_up": (
        "During the follow-up interview the employee confirmed that they {event}.",
        "A witness statement was collected from a colleague working nearby.",
        "The maintenance log shows that the {equipment} was last inspected {days} days before the incident.",
        "The manager confirmed that {hazard} had been raised at a team meeting.",
        "The employee attended a clinic and was diagnosed with {injury}.",
        "The employee is expected to return to full duties within {days} days.",
        "CCTV footage of the area was requested, but the camera did not cover the exact spot.",
        "The risk assessment for this task was last reviewed {months} months ago.",
        "Asked whether {ppe} was available, the employee said it was kept in the {area}.",
        "The task is normally done by two people, but only one was available that day.",
        "The witness described the area as cluttered with empty pallets and shrink wrap.",
        "Temporary controls were put in place: {control}.",
        "The investigator walked the route with the employee and took measurements.",
        "A similar near miss happened about {months} months ago but was never reported.",
        "The employee's {body_part} is still sore and they are on light duties.",
    ),
    "final": (
        "Root cause: {hazard} was not picked up by the existing inspection routine.",
        "Contributing factor: time pressure at the end of the shift.",
        "Contributing factor: the written procedure did not match how the task is actually done.",
        "Corrective action: {control}.",
        "Corrective action owner: the site manager, due within {days} days.",
        "Preventive action: {control}, to be verified at the next quarterly audit.",
        "The investigation found no evidence of deliberate unsafe behaviour.",
        "The incident has been recorded as {injury_class} for regulatory reporting.",
        "Lessons learned will be shared with all sites in the next safety bulletin.",
        "The {equipment} has been inspected and returned to service after repairs.",
        "Training records were reviewed and {n} refresher sessions were scheduled.",
        "The employee has returned to work and reports no further symptoms.",
        "Without the actions above, the likelihood of recurrence is judged {likelihood}.",
        "Reviewed by the safety committee and approved by the operations director.",
    ),
}
_OPENERS = {
    "initial": (
        "On {date} at about {time}, {reporter} was in the {area} at {site} when the incident happened.",
        "Reported by {reporter} ({job}) at {site}: the incident happened on {date} at around {time}.",
        "{reporter} reports that on {date}, {time}, something went wrong in the {area} at {site}.",
    ),
    "follow_up": (
        "Follow-up by {author} on {date}: spoke with {people}.",
        "Follow-up notes ({date}, {author}) after interviews with {people}.",
    ),
    "final": (
        "Final investigation report for {reference}, prepared by {author} on {date}.",
        "Final report ({reference}). Investigator: {author}. Date: {date}.",
    ),
}
_QUESTIONS = (
    "Were you wearing {ppe} when it happened?",
    "How long had {hazard} been there before the incident?",
    "Who else was in the {area} at the time?",
    "Had the {equipment} been checked before use that day?",
    "Did you report any pain in your {body_part} before this shift?",
    "Was the task covered by a written procedure or risk assessment?",
    "Were there any warning signs or barriers in place?",
    "What would have prevented this from happening?",
    "Did anyone give first aid, and what was done?",
    "Has anything similar happened in this area before?",
)
_SHORT_ANSWERS = ("Yes.", "No.", "Not sure.", "Yes, all of it.", "No, not that day.", "I think so 👍")


@dataclass(frozen=True)
class _Pool:
    """Ready-made sentences for one category and phase, grouped by template."""

    variants: tuple[tuple[str, ...], ...]
    #: Strides coprime with the number of templates: walking the templates with one of them
    #: visits every template before any repeats.
    strides: tuple[int, ...]


@cache
def _pool(category: int, phase: str) -> _Pool:
    """The sentence pool of a category and phase, built once per process.

    Filling templates once and then picking whole sentences is what keeps generating ~1 GB
    of text fast: a narrative costs one list pick per sentence, not a format call.
    """
    cat = _CATEGORIES[category]
    rng = _rng(f"pool/{cat.key}/{phase}")
    variants = tuple(
        tuple(template.format(**_words(rng, cat)) for _ in range(_VARIANTS_PER_TEMPLATE))
        for template in _SENTENCES[phase]
    )
    assert max(len(v) for vs in variants for v in vs) <= _MAX_SENTENCE_CHARS, (
        "narrative bounds need short sentences"
    )
    n = len(variants)
    return _Pool(variants, tuple(s for s in range(1, n) if gcd(s, n) == 1))


def _words(rng: random.Random, cat: _Category) -> dict[str, Any]:
    return {
        "event": rng.choice(cat.events),
        "hazard": rng.choice(cat.hazards),
        "equipment": rng.choice(cat.equipment),
        "injury": rng.choice(cat.injuries),
        "body_part": rng.choice(cat.body_parts),
        "control": rng.choice(cat.controls),
        "area": rng.choice(_AREAS),
        "ppe": rng.choice(_PPE),
        "weather": rng.choice(_WEATHER),
        "injury_class": rng.choice(_INJURY_CLASSES),
        "likelihood": rng.choice(_LIKELIHOODS),
        "days": rng.randint(2, 60),
        "months": rng.randint(2, 24),
        "n": rng.randint(2, 6),
    }


def _compose(rng: random.Random, pool: _Pool, target: int, opener: str = "") -> str:
    """Sentences from ``pool`` after ``opener`` until ``target`` characters are reached.

    The result is at least ``target`` long and at most one sentence longer. Templates are
    walked from a random start with a random coprime stride, so a text repeats no template
    until it has used them all, and paragraph breaks come now and then.
    """
    variants = pool.variants
    n = len(variants)
    at, stride = rng.randrange(n), rng.choice(pool.strides)
    parts = [opener] if opener else []
    size = len(opener)
    while size < target:
        if parts:
            sep = "\n\n" if rng.random() < _PARAGRAPH_BREAK_SHARE else " "
            parts.append(sep)
            size += len(sep)
        sentence = rng.choice(variants[at % n])
        at += stride
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)


def _length(rng: random.Random, shape: tuple[int, int, int]) -> int:
    low, mode, high = shape
    return int(rng.triangular(low, high, mode))


# --------------------------------------------------------------------------------------
# AI prompts: a fixed catalogue, three versions each, rolled out at fixed dates.
# --------------------------------------------------------------------------------------

#: (name, what the assistant must do); the rendered template is the chat's system message.
_PROMPT_TASKS = (
    ("narrative_assist",
     "Rewrite the reporter's draft into a clear, factual, chronological narrative. Keep every "
     "fact, name and time the reporter gave; never invent injuries, causes or witnesses. Use plain language "
     "and the past tense. Flag contradictions instead of resolving them."),
    ("clarifying_questions",
     "Read the narrative and list up to five short questions whose answers would most "
     "improve the investigation: missing times, people, equipment state, protective equipment, training. "
     "Return JSON with a 'questions' array of strings."),
    ("classification",
     "Classify the incident. Return JSON with 'event_type', 'body_part' and 'hazard_class', "
     "each an object with 'code', 'label' and 'confidence' between 0 and 1. Use 'none' when not applicable."),
    ("root_cause_analysis",
     "Identify the most likely root cause and the contributing factors using the five-whys "
     "method. Return JSON with 'root_cause', 'contributing_factors' (objects with 'factor', 'weight', "
     "'evidence') and 'recommendations' (strings, most effective control first)."),
    ("title_suggestion",
     "Suggest a short, neutral title for the incident, at most eight words, without names. "
     "Return JSON with a 'title' string."),
)  # fmt: skip
_GUIDANCE_V2 = (
    "\n\nWrite for a safety manager who was not there. Do not speculate about blame; describe conditions "
    "and actions."
)
_GUIDANCE_V3 = _GUIDANCE_V2 + " Order remedies by the hierarchy of controls, elimination first, PPE last."
_PROMPT_VERSIONS = (  # (rolled out, model, temperature in hundredths, extra guidance)
    (datetime(2023, 11, 1, tzinfo=UTC), "gpt-4o-mini-2024-07-18", 20, ""),
    (datetime(2024, 9, 1, tzinfo=UTC), "gpt-4o-2024-08-06", 20, _GUIDANCE_V2),
    (datetime(2025, 4, 15, tzinfo=UTC), "gpt-4.1-2025-04-14", 10, _GUIDANCE_V3),
)
_PROMPT_TEMPLATE = (
    "You are the incident assistant of {company} ({industry}). You help staff at {site} document "
    "workplace incidents of type '{category}' accurately and quickly.\n\nTask: {task}{guidance}\n\n"
    "Answer in the language of the report. Never include contact details, dates of birth or identifiers "
    "other than the incident reference."
)
#: Prices in nano-USD per token: (input, output).
_MODEL_PRICES = {
    "gpt-4o-mini-2024-07-18": (150, 600),
    "gpt-4o-2024-08-06": (2500, 10000),
    "gpt-4.1-2025-04-14": (2000, 8000),
}
_AI_ERRORS = (
    (429, "rate_limit_error", "Rate limit reached for requests per minute. Please try again in 1.2s."),
    (500, "server_error", "The server had an error while processing your request."),
    (503, "overloaded_error", "The engine is currently overloaded, please try again later."),
)


def _prompt_id(task: int, version: int) -> int:
    return task * len(_PROMPT_VERSIONS) + version + 1


def _prompt_version_at(when_ms: int) -> int:
    """The prompt version in production at ``when_ms``: the latest one rolled out by then."""
    when = _at(when_ms)
    version = 0
    for i, (rolled_out, *_rest) in enumerate(_PROMPT_VERSIONS):
        if rolled_out <= when:
            version = i
    return version


# --------------------------------------------------------------------------------------
# The world: who and what exists, planned before any text is written.
# --------------------------------------------------------------------------------------

_ROLE_ADMIN = 0
_MANAGERS = range(1, 4)
_SAFETY_OFFICERS = range(4, 6)
_STAFF = range(6, _USERS_PER_COMPANY)
_OAUTH_PROVIDERS = ("google", "microsoft", "okta", "github")
#: The AI calls an incident makes are (purpose, narrative phase, failed attempt) triples; these
#: shared instances keep 250k of them at scale 100 down to pointers.
_AI_CALL = {(t, p, f): (t, p, f) for t, _ in _PROMPT_TASKS for p in _PHASES for f in (False, True)}


@dataclass(frozen=True, slots=True)
class _Company:
    id: int
    name: str
    sector: int
    domain: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class _Site:
    id: int
    company_id: int
    name: str
    city: int


@dataclass(frozen=True, slots=True)
class _User:
    id: int
    company_id: int
    site_id: int
    role: str
    manager_id: int | None
    first_name: str
    last_name: str
    email: str
    created_ms: int
    sessions: int
    oauth_provider: str | None

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True, slots=True)
class _Incident:
    id: int
    company_id: int
    site_id: int
    category: int
    area: str
    severity: str
    #: Reporter first; all distinct users of the incident's company.
    participants: tuple[int, ...]
    officer_id: int
    investigator_id: int
    occurred_ms: int
    reported_ms: int
    #: stages[i] is when the status moved from _STATUSES[i] to _STATUSES[i + 1].
    stages: tuple[int, ...]
    phases: tuple[str, ...]
    questions: int
    answered: int
    classifications: int
    ai_calls: tuple[tuple[str, str, bool], ...]

    @property
    def reporter_id(self) -> int:
        return self.participants[0]

    @property
    def status(self) -> str:
        return _STATUSES[len(self.stages)]

    @property
    def analysed(self) -> bool:
        """Root-cause analysis starts with the investigation."""
        return len(self.stages) >= 2

    def phase_ms(self, phase: str) -> int:
        """When the narrative of ``phase`` was written: on report, mid-investigation, on resolution."""
        if phase == "initial":
            return self.reported_ms
        if phase == "final":
            return self.stages[2]
        end = self.stages[2] if len(self.stages) > 2 else 0
        return (self.stages[1] + end) // 2


class _World:
    """Companies, sites, users and incident skeletons for one scale.

    Kept small (no text) so it can be held whole: at scale 100 it is ~36k small objects.
    User and site ids are contiguous per company, so a company's people are a range.
    """

    def __init__(self, scale: int) -> None:
        rng = _rng("world")
        n_companies = scale * _COMPANIES_PER_SCALE
        self.companies = [self._company(rng, i + 1) for i in range(n_companies)]
        self.sites = [self._site(rng, c, sid) for c in self.companies for sid in self.company_sites(c.id)]
        self.users = [u for c in self.companies for u in self._users(rng, c)]
        self.incidents = [i for c in self.companies for i in self._incidents(rng, c)]

    def company_users(self, company_id: int) -> range:
        return range((company_id - 1) * _USERS_PER_COMPANY + 1, company_id * _USERS_PER_COMPANY + 1)

    def company_sites(self, company_id: int) -> range:
        return range((company_id - 1) * _SITES_PER_COMPANY + 1, company_id * _SITES_PER_COMPANY + 1)

    def user(self, user_id: int) -> _User:
        return self.users[user_id - 1]

    def site(self, site_id: int) -> _Site:
        return self.sites[site_id - 1]

    def company(self, company_id: int) -> _Company:
        return self.companies[company_id - 1]

    @staticmethod
    def _company(rng: random.Random, cid: int) -> _Company:
        sector = rng.randrange(len(_SECTORS))
        prefix = rng.choice(_COMPANY_PREFIXES)
        name = f"{prefix} {_SECTORS[sector][0]} {rng.choice(_COMPANY_SUFFIXES)}"
        # The id keeps domains (and so emails) unique when names repeat at large scales.
        domain = f"{_ascii(prefix)}-{_ascii(_SECTORS[sector][0])}-{cid}.example"
        return _Company(cid, name, sector, domain, _ago(rng, 3 * 365, 7 * 365))

    @staticmethod
    def _site(rng: random.Random, company: _Company, site_id: int) -> _Site:
        city = rng.randrange(len(_CITIES))
        kind = rng.choice(_SECTORS[company.sector][2])
        return _Site(site_id, company.id, f"{_CITIES[city][0]} {kind}", city)

    def _users(self, rng: random.Random, company: _Company) -> Iterator[_User]:
        ids = self.company_users(company.id)
        sites = self.company_sites(company.id)
        taken: set[str] = set()
        for k, uid in enumerate(ids):
            if k == _ROLE_ADMIN:
                role, manager = "admin", None
            elif k in _MANAGERS or k in _SAFETY_OFFICERS:
                role, manager = ("manager" if k in _MANAGERS else "safety_officer"), ids[_ROLE_ADMIN]
            else:
                role, manager = "staff", ids[rng.choice(_MANAGERS)]
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            local = base = f"{_ascii(first)}.{_ascii(last)}"
            suffix = 2
            while local in taken:
                local, suffix = f"{base}{suffix}", suffix + 1
            taken.add(local)
            created = company.created_ms + rng.randint(0, -company.created_ms - 2 * 365 * _MS_PER_DAY)
            oauth = rng.choice(_OAUTH_PROVIDERS) if rng.random() < _OAUTH_SHARE else None
            yield _User(uid, company.id, rng.choice(sites), role, manager, first, last,
                        f"{local}@{company.domain}", created, rng.randint(*_SESSIONS_PER_USER),
                        oauth)  # fmt: skip

    def _incidents(self, rng: random.Random, company: _Company) -> Iterator[_Incident]:
        users = self.company_users(company.id)
        sites = self.company_sites(company.id)
        # Sorted so that ids follow time within a company, as they would in the real service.
        occurred = sorted(_ago(rng, 1, 2 * 365) for _ in range(_INCIDENTS_PER_COMPANY))
        first_id = (company.id - 1) * _INCIDENTS_PER_COMPANY + 1
        for iid, occurred_ms in enumerate(occurred, first_id):
            reporter = users[rng.choice(_STAFF)] if rng.random() < 0.85 else rng.choice(users)
            others = rng.sample([u for u in users if u != reporter], rng.randint(*_EXTRA_PARTICIPANTS))
            reported = occurred_ms + rng.randint(5 * _MS_PER_MINUTE, 48 * _MS_PER_HOUR)
            reported = min(reported, -_MS_PER_MINUTE)
            stages = self._stages(rng, reported)
            phases = ["initial"]
            if len(stages) >= 2 and rng.random() < _FOLLOW_UP_SHARE:
                phases.append("follow_up")
            if len(stages) >= 3:
                phases.append("final")
            questions = rng.randint(*_QUESTIONS_PER_INCIDENT) if stages else rng.randint(0, 2)
            answered = sum(rng.random() < _ANSWERED_SHARE for _ in range(questions))
            classifications = rng.randint(*_CLASSIFICATIONS_PER_INCIDENT)
            calls = [("title_suggestion", "initial")] if rng.random() < _UNTITLED_SHARE else []
            calls.append(("classification", "initial"))
            calls += [
                ("narrative_assist", p) for p in phases for _ in range(rng.randint(*_DRAFTS_PER_NARRATIVE))
            ]
            if questions:
                calls.append(("clarifying_questions", "initial"))
            if len(stages) >= 2:
                calls.append(("root_cause_analysis", "initial"))
            ai_calls = tuple(
                _AI_CALL[purpose, phase, failed]
                for purpose, phase in calls
                for failed in ((True, False) if rng.random() < _AI_RETRY_SHARE else (False,))
            )
            yield _Incident(
                iid, company.id, rng.choice(sites), rng.randrange(len(_CATEGORIES)), rng.choice(_AREAS),
                rng.choices([s for s, _ in _SEVERITIES], [w for _, w in _SEVERITIES])[0],
                (reporter, *others), users[rng.choice(_SAFETY_OFFICERS)], users[rng.choice(_MANAGERS)],
                occurred_ms, reported, stages, tuple(phases), questions, answered, classifications, ai_calls,
            )  # fmt: skip

    @staticmethod
    def _stages(rng: random.Random, reported_ms: int) -> tuple[int, ...]:
        """Status transitions up to a drawn target, cut short where they would reach "now"."""
        target = rng.choices(range(len(_STATUSES)), _STATUS_WEIGHTS)[0]
        stages: list[int] = []
        at = reported_ms
        for low, high in _STAGE_GAPS[:target]:
            at += rng.randint(low, high)
            if at >= -_MS_PER_HOUR:
                break
            stages.append(at)
        return tuple(stages)


# --------------------------------------------------------------------------------------
# Schema: one dialect-neutral description; the targets render it per dialect.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Col:
    name: str
    #: Dialect-neutral kind (:data:`sqlsnap.targets.KINDS`): id, bigint, int, text, longtext,
    #: varchar:N, uuid, bool, numeric:P,S, timestamptz, date, json, inet, varbinary:N.
    kind: str
    nullable: bool = False
    #: Parent table; foreign keys always point at the parent's ``id``.
    references: str | None = None


_Row = tuple[Any, ...]


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[_Col, ...]
    rows: Callable[[_World], Iterator[_Row]]
    primary_key: tuple[str, ...]
    unique: tuple[tuple[str, ...], ...]
    check: str | None


_TABLES: list[_Table] = []


def _table(
    name: str,
    *columns: _Col,
    primary_key: tuple[str, ...] = ("id",),
    unique: tuple[tuple[str, ...], ...] = (),
    check: str | None = None,
) -> Callable[[Callable[[_World], Iterator[_Row]]], Callable[[_World], Iterator[_Row]]]:
    """Register a table next to the generator of its rows, which yields tuples in column order.

    Tables are registered parent-first, which is the order they are created and filled in.
    """

    def register(rows: Callable[[_World], Iterator[_Row]]) -> Callable[[_World], Iterator[_Row]]:
        _TABLES.append(_Table(name, columns, rows, primary_key, unique, check))
        return rows

    return register


def _id() -> _Col:
    return _Col("id", "id")


def _fk(name: str, parent: str, nullable: bool = False) -> _Col:
    return _Col(name, "bigint", nullable, parent)


def _model_table(table: _Table, dialect: str) -> Table:
    """``table`` as the model's dataclass, with ``dialect``'s column types, for the targets."""
    return Table(
        name=table.name,
        schema="",
        relname=table.name,
        columns=[Column(c.name, column_type(c.kind, dialect), c.nullable) for c in table.columns],
        primary_key=list(table.primary_key),
        foreign_keys=[ForeignKey((c.name,), c.references, ("id",)) for c in table.columns if c.references],
    )


# --------------------------------------------------------------------------------------
# Tables and their rows, parent-first.
# --------------------------------------------------------------------------------------


@_table(
    "companies",
    _id(), _Col("public_id", "uuid"), _Col("name", "varchar:200"), _Col("slug", "varchar:120"),
    _Col("industry", "varchar:60"), _Col("plan", "varchar:20"), _Col("country_code", "varchar:2"),
    _Col("seats", "int"), _Col("monthly_fee", "numeric:10,2"), _Col("is_active", "bool"),
    _Col("founded_on", "date", nullable=True), _Col("created_at", "timestamptz"),
    unique=(("public_id",), ("slug",)),
)  # fmt: skip
def _company_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("companies")
    for c in world.companies:
        plan, cents_per_seat = rng.choices(_PLANS, (2, 4, 3, 1))[0]
        seats = rng.randint(5, 400)
        founded = (
            date(rng.randint(1950, 2018), rng.randint(1, 12), rng.randint(1, 28))
            if rng.random() < 0.9
            else None
        )
        hq_country = _CITIES[world.site(world.company_sites(c.id)[0]).city][1]
        yield (
            c.id, _uuid(rng), c.name, f"{_ascii(c.name).replace('.', '')}-{c.id}", _SECTORS[c.sector][1],
            plan,
            hq_country, seats, _fixed(seats * cents_per_seat, 2), rng.random() < 0.95, founded,
            _at(c.created_ms),
        )  # fmt: skip


@_table(
    "sites",
    _id(), _fk("company_id", "companies"), _Col("name", "varchar:200"), _Col("site_code", "varchar:20"),
    _Col("address", "varchar:255"), _Col("city", "varchar:100"), _Col("country_code", "varchar:2"),
    _Col("timezone", "varchar:64"), _Col("latitude", "numeric:9,6"), _Col("longitude", "numeric:9,6"),
    _Col("headcount", "int"), _Col("opened_on", "date"), _Col("created_at", "timestamptz"),
)  # fmt: skip
def _site_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("sites")
    for s in world.sites:
        city, country, tz, lat, lon, _dial = _CITIES[s.city]
        created = world.company(s.company_id).created_ms + rng.randint(0, 30 * _MS_PER_DAY)
        yield (
            s.id, s.company_id, s.name, f"{country}-{_ascii(city)[:3].upper()}-{s.id:04d}",
            f"{rng.randint(1, 250)} {rng.choice(_STREETS)}", city, country, tz,
            _fixed(round(lat * 1e6) + rng.randint(-20000, 20000), 6),
            _fixed(round(lon * 1e6) + rng.randint(-20000, 20000), 6),
            rng.randint(8, 600), (_at(created) - timedelta(days=rng.randint(0, 4000))).date(), _at(created),
        )  # fmt: skip


@_table(
    "users",
    _id(), _fk("company_id", "companies"), _fk("site_id", "sites", nullable=True),
    _fk("manager_id", "users", nullable=True), _Col("email", "varchar:255"), _Col("full_name", "varchar:200"),
    _Col("phone", "varchar:40", nullable=True), _Col("date_of_birth", "date", nullable=True),
    _Col("job_title", "varchar:120"), _Col("role", "varchar:32"), _Col("password_hash", "varchar:60"),
    _Col("is_active", "bool"), _Col("mfa_enabled", "bool"), _Col("last_login_ip", "inet", nullable=True),
    _Col("last_login_at", "timestamptz", nullable=True), _Col("created_at", "timestamptz"),
    unique=(("email",),),
)  # fmt: skip
def _user_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("users")
    bcrypt_alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    for u in world.users:
        dial = _CITIES[world.site(u.site_id).city][5]
        phone = f"+{dial} {rng.randint(20, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
        born = date(1960, 1, 1) + timedelta(days=rng.randrange(45 * 365))
        logged_in = rng.random() < 0.93
        yield (
            u.id, u.company_id, u.site_id if rng.random() < 0.9 else None, u.manager_id, u.email, u.full_name,
            phone if rng.random() < 0.9 else None, born if rng.random() < 0.8 else None,
            rng.choice(_JOB_TITLES[u.role]), u.role, "$2b$12$" + "".join(rng.choices(bcrypt_alphabet, k=53)),
            rng.random() < 0.95, rng.random() < 0.4, _ip(rng) if logged_in else None,
            _at(_ago(rng, 0.01, 60)) if logged_in else None, _at(u.created_ms),
        )  # fmt: skip


@_table(
    "sessions",
    _id(), _fk("user_id", "users"), _Col("session_token", "varchar:64"), _Col("token_hash", "varbinary:64"),
    _Col("ip_address", "inet"), _Col("user_agent", "text"), _Col("created_at", "timestamptz"),
    _Col("last_seen_at", "timestamptz"), _Col("expires_at", "timestamptz"),
    _Col("revoked_at", "timestamptz", nullable=True),
    unique=(("session_token",),),
)  # fmt: skip
def _session_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("sessions")
    sid = 0
    for u in world.users:
        for _ in range(u.sessions):
            sid += 1
            token = _b64url(rng.randbytes(32))
            created = _ago(rng, 0.05, 180)
            last_seen = min(created + rng.randint(0, 6 * _MS_PER_HOUR), -1000)
            revoked = _at(last_seen + rng.randint(1000, _MS_PER_HOUR)) if rng.random() < 0.15 else None
            yield (
                sid, u.id, token, hashlib.sha256(token.encode("ascii")).digest(), _ip(rng),
                rng.choice(_USER_AGENTS), _at(created), _at(last_seen), _at(created + 14 * _MS_PER_DAY),
                revoked,
            )  # fmt: skip


def _jwt(rng: random.Random, claims: dict[str, Any]) -> str:
    """A JWT-shaped token: real header and claims, random signature."""
    header = {"alg": "RS256", "kid": f"{rng.getrandbits(64):016x}", "typ": "JWT"}
    return ".".join(
        (_b64url(_json(header).encode()), _b64url(_json(claims).encode()), _b64url(rng.randbytes(256)))
    )


@_table(
    "oauth_accounts",
    _id(), _fk("user_id", "users"), _Col("provider", "varchar:32"),
    _Col("provider_account_id", "varchar:128"), _Col("access_token", "text"),
    _Col("refresh_token", "text", nullable=True), _Col("id_token", "text", nullable=True),
    _Col("token_type", "varchar:16"), _Col("scope", "varchar:512"),
    _Col("expires_at", "timestamptz"), _Col("created_at", "timestamptz"),
    unique=(("provider", "provider_account_id"),),
)  # fmt: skip
def _oauth_account_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("oauth_accounts")
    oid = 0
    for u in world.users:
        if u.oauth_provider is None:
            continue
        oid += 1
        issued = _ago(rng, 0.01, 1)
        expires = issued + _MS_PER_HOUR
        account = str(rng.randrange(10**20, 10**21))
        claims = {"iss": f"https://{u.oauth_provider}.example", "sub": account, "aud": "incident-app",
                  "email": u.email, "name": u.full_name, "iat": issued // 1000 + int(_EPOCH.timestamp()),
                  "exp": expires // 1000 + int(_EPOCH.timestamp())}  # fmt: skip
        if u.oauth_provider == "github":  # GitHub apps issue no refresh or id tokens
            access, refresh = f"gho_{_b64url(rng.randbytes(27))}", None
            id_token, scope = None, "read:user user:email"
        elif u.oauth_provider == "google":
            access, refresh = f"ya29.{_b64url(rng.randbytes(120))}", f"1//0{_b64url(rng.randbytes(75))}"
            id_token, scope = _jwt(rng, claims), "openid email profile"
        else:
            access, refresh = _jwt(rng, {**claims, "scp": "User.Read"}), _b64url(rng.randbytes(96))
            id_token, scope = _jwt(rng, claims), "openid email profile offline_access"
        yield (
            oid, u.id, u.oauth_provider, account, access, refresh, id_token, "Bearer", scope,
            _at(expires), _at(max(u.created_ms, _ago(rng, 30, 400))),
        )  # fmt: skip


def _incident_words(world: _World, inc: _Incident) -> dict[str, str]:
    """The names, places and times an incident's own texts mention."""
    reporter = world.user(inc.reporter_id)
    occurred = _at(inc.occurred_ms)
    return {
        "reporter": reporter.full_name,
        "reporter_first": reporter.first_name,
        "job": _JOB_TITLES[reporter.role][inc.id % len(_JOB_TITLES[reporter.role])],
        "site": world.site(inc.site_id).name,
        "area": inc.area,
        "date": occurred.strftime("%d %B %Y"),
        "time": occurred.strftime("%H:%M"),
        "reference": _reference(inc),
    }


def _reference(inc: _Incident) -> str:
    return f"INC-{_at(inc.occurred_ms).year}-{inc.id:06d}"


@_table(
    "incidents",
    _id(), _Col("public_id", "uuid"), _Col("reference", "varchar:32"), _fk("company_id", "companies"),
    _fk("site_id", "sites"), _fk("reported_by", "users"), _Col("title", "varchar:255"),
    _Col("category", "varchar:64"), _Col("status", "varchar:20"), _Col("severity", "varchar:16"),
    _Col("occurred_at", "timestamptz"), _Col("reported_at", "timestamptz"),
    _Col("resolved_at", "timestamptz", nullable=True), _Col("injury_involved", "bool"),
    _Col("lost_work_days", "int"), _Col("estimated_cost", "numeric:12,2", nullable=True),
    _Col("description", "text"), _Col("updated_at", "timestamptz"),
    unique=(("public_id",), ("reference",)),
)  # fmt: skip
def _incident_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("incidents")
    for inc in world.incidents:
        cat = _CATEGORIES[inc.category]
        words = _incident_words(world, inc)
        title = rng.choice(cat.titles).format(area=inc.area, equipment=rng.choice(cat.equipment))
        opener = f"{words['reporter_first']} {rng.choice(cat.events)} in the {inc.area} at {words['site']}."
        injured = cat.key != "near_miss" and rng.random() < 0.6
        yield (
            inc.id, _uuid(rng), words["reference"], inc.company_id, inc.site_id, inc.reporter_id,
            title, cat.key, inc.status, inc.severity, _at(inc.occurred_ms),
            _at(inc.reported_ms), _at(inc.stages[2]) if len(inc.stages) > 2 else None, injured,
            rng.randint(1, 30) if injured and rng.random() < 0.3 else 0,
            _fixed(rng.randint(0, 2_500_000), 2) if rng.random() < 0.7 else None,
            _compose(rng, _pool(inc.category, "initial"), _length(rng, _DESCRIPTION_CHARS), opener),
            _at(inc.stages[-1] if inc.stages else inc.reported_ms),
        )  # fmt: skip


@_table(
    "participants",
    _fk("incident_id", "incidents"), _fk("user_id", "users"), _Col("role", "varchar:32"),
    _Col("statement", "text", nullable=True), _Col("added_at", "timestamptz"),
    primary_key=("incident_id", "user_id"),
)  # fmt: skip
def _participant_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("participants")
    for inc in world.incidents:
        pool = _pool(inc.category, "initial")
        for position, uid in enumerate(inc.participants):
            role = "reporter" if position == 0 else rng.choice(_PARTICIPANT_ROLES)
            statement = _compose(rng, pool, rng.randint(80, 400)) if position and rng.random() < 0.5 else None
            added = inc.reported_ms + position * rng.randint(1000, _MS_PER_HOUR)
            yield inc.id, uid, role, statement, _at(added)


def _authors(inc: _Incident) -> dict[str, int]:
    """Who writes each narrative phase: the reporter, then the safety officer, then the investigator."""
    return {"initial": inc.reporter_id, "follow_up": inc.officer_id, "final": inc.investigator_id}


@_table(
    "incident_narratives",
    _id(), _fk("incident_id", "incidents"), _fk("author_id", "users"), _Col("phase", "varchar:16"),
    _Col("version", "int"), _Col("content", "text"), _Col("word_count", "int"), _Col("ai_assisted", "bool"),
    _Col("created_at", "timestamptz"),
    unique=(("incident_id", "phase"),),
    check=f"phase IN ({', '.join(repr(p) for p in _PHASES)})",
)  # fmt: skip
def _narrative_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("incident_narratives")
    nid = 0
    for inc in world.incidents:
        words = _incident_words(world, inc)
        authors = _authors(inc)
        *others, last = [world.user(u).full_name for u in inc.participants[:3]]
        words["people"] = f"{', '.join(others)} and {last}" if others else last
        for phase in inc.phases:
            nid += 1
            written = _at(inc.phase_ms(phase))
            # The initial narrative dates the incident; later ones are dated when written.
            written_on = words["date"] if phase == "initial" else written.strftime("%d %B %Y")
            fields = {**words, "author": world.user(authors[phase]).full_name, "date": written_on}
            opener = rng.choice(_OPENERS[phase]).format(**fields)
            text = _compose(rng, _pool(inc.category, phase), _length(rng, _NARRATIVE_TARGETS[phase]), opener)
            yield (
                nid, inc.id, authors[phase], phase, rng.randint(1, 4), text, len(text.split()),
                rng.random() < 0.7, written,
            )  # fmt: skip


def _question(rng: random.Random, inc: _Incident, template: str) -> str:
    """A clarifying question about this incident's own place and a plausible detail of its kind."""
    return template.format(**{**_words(rng, _CATEGORIES[inc.category]), "area": inc.area})


@_table(
    "clarification_questions",
    _id(), _fk("incident_id", "incidents"), _fk("narrative_id", "incident_narratives"),
    _Col("position", "int"), _Col("question", "text"), _Col("generated_by", "varchar:16"),
    _Col("is_required", "bool"), _Col("created_at", "timestamptz"),
)  # fmt: skip
def _question_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("clarification_questions")
    qid = narratives = 0
    for inc in world.incidents:
        initial_narrative = narratives + 1  # the incident's first narrative is its initial one
        narratives += len(inc.phases)
        for position, template in enumerate(rng.sample(_QUESTIONS, inc.questions), 1):
            qid += 1
            question = _question(rng, inc, template)
            asked = min(inc.reported_ms + rng.randint(_MS_PER_MINUTE, 10 * _MS_PER_MINUTE), -1000)
            yield (
                qid, inc.id, initial_narrative, position, question,
                "ai" if rng.random() < 0.8 else "investigator",
                rng.random() < 0.5, _at(asked),
            )  # fmt: skip


@_table(
    "clarification_answers",
    _id(), _fk("question_id", "clarification_questions"), _fk("answered_by", "users"), _Col("answer", "text"),
    _Col("created_at", "timestamptz"),
)  # fmt: skip
def _answer_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("clarification_answers")
    aid = questions = 0
    for inc in world.incidents:
        pool = _pool(inc.category, "follow_up")
        for qid in range(questions + 1, questions + inc.answered + 1):  # the first ones get answered
            aid += 1
            if rng.random() < 0.3:
                answer = rng.choice(_SHORT_ANSWERS)
            else:
                answer = _compose(rng, pool, rng.randint(60, 500))
            answered = min(inc.reported_ms + rng.randint(15 * _MS_PER_MINUTE, 5 * _MS_PER_DAY), -1000)
            yield aid, qid, rng.choice(inc.participants), answer, _at(answered)
        questions += inc.questions


@_table(
    "incident_analyses",
    _id(), _fk("incident_id", "incidents"), _Col("model", "varchar:64"), _Col("root_cause", "text"),
    _Col("contributing_factors", "json"), _Col("recommendations", "text"), _Col("risk_score", "int"),
    _Col("confidence", "numeric:4,3"), _fk("reviewed_by", "users", nullable=True),
    _Col("created_at", "timestamptz"),
)  # fmt: skip
def _analysis_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("incident_analyses")
    aid = 0
    for inc in world.incidents:
        if not inc.analysed:
            continue
        aid += 1
        cat = _CATEGORIES[inc.category]
        final_pool = _pool(inc.category, "final")
        created = inc.stages[1] + _MS_PER_HOUR
        model = _PROMPT_VERSIONS[_prompt_version_at(created)][1]
        factors = [
            {"factor": rng.choice(cat.hazards), "weight": round(rng.uniform(0.1, 0.9), 2),
             "evidence": _compose(rng, _pool(inc.category, "follow_up"), rng.randint(80, 300))}
            for _ in range(rng.randint(1, 4))
        ]  # fmt: skip
        recommendations = "\n".join(
            f"{i}. {c[:1].upper()}{c[1:]}." for i, c in enumerate(rng.sample(cat.controls, 3), 1)
        )
        yield (
            aid, inc.id, model, _compose(rng, final_pool, rng.randint(200, 900)), _json(factors),
            recommendations, rng.randint(1, 25), _fixed(rng.randint(400, 990), 3),
            inc.investigator_id if len(inc.stages) > 2 else None, _at(min(created, -1000)),
        )  # fmt: skip


def _classification(cat_index: int, taxonomy: str, pick: int) -> tuple[str, str]:
    """(code, label) of an incident in a taxonomy; ``pick`` selects among the category's options."""
    cat = _CATEGORIES[cat_index]
    if taxonomy == "event_type":
        return f"ET-{cat.key.upper()}", cat.label
    options = cat.body_parts if taxonomy == "body_part" else cat.hazards
    label = options[pick % len(options)]
    prefix = "BP" if taxonomy == "body_part" else "HZ"
    words = [w for w in _ascii(label).split("-") if w not in ("a", "an", "the")]
    return f"{prefix}-{'_'.join(words[:3]).upper()}", label


@_table(
    "incident_classifications",
    _id(), _fk("incident_id", "incidents"), _Col("taxonomy", "varchar:32"), _Col("code", "varchar:32"),
    _Col("label", "varchar:128"), _Col("confidence", "numeric:4,3"), _Col("source", "varchar:16"),
    _Col("is_confirmed", "bool"), _Col("created_at", "timestamptz"),
    unique=(("incident_id", "taxonomy"),),
)  # fmt: skip
def _classification_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("incident_classifications")
    cid = 0
    for inc in world.incidents:
        for taxonomy in _TAXONOMIES[: inc.classifications]:
            cid += 1
            code, label = _classification(inc.category, taxonomy, rng.randrange(8))
            created = min(inc.reported_ms + rng.randint(_MS_PER_MINUTE, 3 * _MS_PER_DAY), -1000)
            yield (
                cid, inc.id, taxonomy, code, label, _fixed(rng.randint(350, 999), 3),
                "ai" if rng.random() < 0.75 else "human", rng.random() < 0.6, _at(created),
            )  # fmt: skip


@_table(
    "ai_prompts",
    _id(), _Col("name", "varchar:64"), _Col("version", "int"), _Col("template", "longtext"),
    _Col("model", "varchar:64"), _Col("temperature", "numeric:3,2"), _Col("is_active", "bool"),
    _Col("created_at", "timestamptz"),
    unique=(("name", "version"),),
)  # fmt: skip
def _prompt_rows(world: _World) -> Iterator[_Row]:
    for task, (name, _text) in enumerate(_PROMPT_TASKS):
        for version, (rolled_out, model, temperature, _guidance) in enumerate(_PROMPT_VERSIONS):
            template = _prompt_template(task, version)
            is_active = version == len(_PROMPT_VERSIONS) - 1
            yield (
                _prompt_id(task, version), name, version + 1, template, model, _fixed(temperature, 2),
                is_active, rolled_out,
            )  # fmt: skip


@cache
def _prompt_template(task: int, version: int) -> str:
    """The stored template: the task and guidance filled in, tenant placeholders left for rendering."""
    return _PROMPT_TEMPLATE.format(
        company="{company}", industry="{industry}", site="{site}", category="{category}",
        task=_PROMPT_TASKS[task][1], guidance=_PROMPT_VERSIONS[version][3],
    )  # fmt: skip


@_table(
    "ai_request_logs",
    _id(), _Col("request_id", "uuid"), _fk("company_id", "companies"), _fk("incident_id", "incidents"),
    _fk("prompt_id", "ai_prompts"), _fk("user_id", "users"), _Col("purpose", "varchar:32"),
    _Col("model", "varchar:64"), _Col("status_code", "int"), _Col("prompt_tokens", "int"),
    _Col("completion_tokens", "int"), _Col("total_tokens", "int"), _Col("cost_usd", "numeric:10,6"),
    _Col("latency_ms", "int"), _Col("request", "json"), _Col("response", "json"),
    _Col("created_at", "timestamptz"),
    unique=(("request_id",),),
)  # fmt: skip
def _ai_request_log_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("ai_request_logs")
    task_index = {name: i for i, (name, _text) in enumerate(_PROMPT_TASKS)}
    lid = 0
    for inc in world.incidents:
        company = world.company(inc.company_id)
        words = _incident_words(world, inc)
        tenant = {"company": company.name, "industry": _SECTORS[company.sector][1], "site": words["site"],
                  "category": _CATEGORIES[inc.category].label}  # fmt: skip
        for purpose, phase, failed in inc.ai_calls:
            lid += 1
            when = _ai_call_ms(rng, inc, purpose, phase)
            version = _prompt_version_at(when)
            task = task_index[purpose]
            model = _PROMPT_VERSIONS[version][1]
            system = _prompt_template(task, version).format(**tenant)
            user_text = _compose(rng, _pool(inc.category, phase), _length(rng, _AI_USER_CONTENT_CHARS))
            request: dict[str, Any] = {
                "model": model, "temperature": _PROMPT_VERSIONS[version][2] / 100, "max_tokens": 2048,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user_text}],
                "metadata": {"incident": words["reference"], "company_id": inc.company_id, "purpose": purpose,
                             "prompt": f"{purpose}@v{version + 1}", "phase": phase},
            }  # fmt: skip
            if purpose != "narrative_assist":
                request["response_format"] = {"type": "json_object"}
            prompt_tokens = (len(system) + len(user_text)) // 4 + 11
            created = int(_EPOCH.timestamp()) + when // 1000
            if failed:
                status, kind, message = rng.choice(_AI_ERRORS)
                response: dict[str, Any] = {"error": {"type": kind, "code": status, "message": message}}
                completion_tokens = 0
                cost = _fixed(0, 6)
                latency = rng.randint(40, 900)
            else:
                status = 200
                content = _ai_completion(rng, inc, purpose, phase)
                completion_tokens = len(content) // 4 + 1
                price_in, price_out = _MODEL_PRICES[model]
                cost = _fixed(round((prompt_tokens * price_in + completion_tokens * price_out) / 1000), 6)
                latency = rng.randint(400, 2000) + completion_tokens * rng.randint(8, 25)
                response = {
                    "id": f"chatcmpl-{_b64url(rng.randbytes(21))}", "object": "chat.completion",
                    "created": created, "model": model,
                    "system_fingerprint": f"fp_{rng.getrandbits(40):010x}",
                    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                 "message": {"role": "assistant", "content": content, "refusal": None}}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens,
                              "prompt_tokens_details": {"cached_tokens": rng.choice((0, 0, 1024))}},
                }  # fmt: skip
            yield (
                lid, _uuid(rng), inc.company_id, inc.id, _prompt_id(task, version), _authors(inc)[phase],
                purpose, model, status, prompt_tokens, completion_tokens, prompt_tokens + completion_tokens,
                cost, latency, _json(request), _json(response), _at(when),
            )  # fmt: skip


def _ai_call_ms(rng: random.Random, inc: _Incident, purpose: str, phase: str) -> int:
    """When a call happened: drafting help just before its narrative, the rest soon after reporting."""
    if purpose == "narrative_assist":
        at = inc.phase_ms(phase) - rng.randint(_MS_PER_MINUTE, 30 * _MS_PER_MINUTE)
    elif purpose == "root_cause_analysis":
        at = inc.stages[1] + rng.randint(_MS_PER_MINUTE, _MS_PER_HOUR)
    else:
        at = inc.reported_ms + rng.randint(1000, 10 * _MS_PER_MINUTE)
    return min(at, -1000)


def _ai_completion(rng: random.Random, inc: _Incident, purpose: str, phase: str) -> str:
    """The assistant's answer: prose for drafting help, a JSON document for the other tasks."""
    cat = _CATEGORIES[inc.category]
    if purpose == "narrative_assist":
        return _compose(rng, _pool(inc.category, phase), _length(rng, _AI_COMPLETION_CHARS))
    if purpose == "title_suggestion":
        return _json(
            {"title": rng.choice(cat.titles).format(area=inc.area, equipment=rng.choice(cat.equipment))}
        )
    if purpose == "clarifying_questions":
        return _json(
            {
                "questions": [
                    _question(rng, inc, template) for template in rng.sample(_QUESTIONS, inc.questions)
                ]
            }
        )
    if purpose == "classification":
        result = {}
        for taxonomy in _TAXONOMIES:
            code, label = _classification(inc.category, taxonomy, rng.randrange(8))
            result[taxonomy] = {"code": code, "label": label, "confidence": round(rng.uniform(0.35, 0.99), 3)}
        return _json(result)
    return _json({
        "root_cause": _compose(rng, _pool(inc.category, "final"), _length(rng, _AI_COMPLETION_CHARS)),
        "contributing_factors": [
            {"factor": hazard, "weight": round(rng.uniform(0.1, 0.9), 2),
             "evidence": _compose(rng, _pool(inc.category, "follow_up"), 1)}
            for hazard in rng.sample(cat.hazards, rng.randint(1, 2))
        ],
        "recommendations": rng.sample(cat.controls, 2),
    })  # fmt: skip


@_table(
    "workflow_handoffs",
    _id(), _fk("incident_id", "incidents"), _fk("from_user_id", "users"), _fk("to_user_id", "users"),
    _Col("from_status", "varchar:20"), _Col("to_status", "varchar:20"), _Col("note", "text", nullable=True),
    _Col("created_at", "timestamptz"),
)  # fmt: skip
def _handoff_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("workflow_handoffs")
    hid = 0
    for inc in world.incidents:
        # Reporter → safety officer → investigator → safety officer → company admin.
        chain = (inc.reporter_id, inc.officer_id, inc.investigator_id, inc.officer_id,
                 world.company_users(inc.company_id)[_ROLE_ADMIN])  # fmt: skip
        pool = _pool(inc.category, "follow_up")
        for i, at in enumerate(inc.stages):
            hid += 1
            note = _compose(rng, pool, rng.randint(40, 250)) if rng.random() < 0.6 else None
            yield hid, inc.id, chain[i], chain[i + 1], _STATUSES[i], _STATUSES[i + 1], note, _at(at)


_LOG_EVENTS = (  # (level, logger, message template)
    ("INFO", "app.http", "{method} {path} {status} in {ms}ms"),
    ("INFO", "app.auth", "User {email} signed in from {ip}"),
    ("WARNING", "app.auth", "Failed password attempt for {email} from {ip} (attempt {attempt})"),
    ("DEBUG", "app.ai", "Rendered prompt {prompt} ({chars} chars) for {reference}"),
    ("WARNING", "app.ai", "AI provider returned 429 for request {request_id}; retrying in {retry}s"),
    ("DEBUG", "app.db", "Slow query ({ms} ms): SELECT * FROM incidents WHERE company_id = {company_id} "
                        "ORDER BY occurred_at DESC LIMIT 50"),
    ("INFO", "app.mail", "Sent notification 'Incident {reference} assigned to you' to {email}"),
    ("ERROR", "app.webhooks", "Webhook delivery to https://hooks.{domain}/incidents failed: {error}"),
    ("ERROR", "app.worker", "Task narratives.summarize[{request_id}] raised {error}"),
)  # fmt: skip
_LOG_WEIGHTS = (40, 15, 5, 15, 5, 6, 8, 3, 3)
_PATHS = ("/api/incidents", "/api/incidents/{id}", "/api/incidents/{id}/narratives",
          "/api/incidents/{id}/questions", "/api/sessions", "/api/users/me")  # fmt: skip
_ERRORS = ("ReadTimeout('timed out after 10.0s')", "ConnectionResetError(104, 'Connection reset by peer')",
           "KeyError('narrative')", "ValueError('response is not valid JSON')")  # fmt: skip
_LOG_WINDOW_DAYS = 30


@_table(
    "debug_logs",
    _id(), _fk("company_id", "companies", nullable=True), _Col("level", "varchar:10"),
    _Col("logger", "varchar:100"), _Col("message", "text"), _Col("context", "json"),
    _Col("created_at", "timestamptz"),
)  # fmt: skip
def _debug_log_rows(world: _World) -> Iterator[_Row]:
    rng = _rng("debug_logs")
    total = len(world.companies) * _DEBUG_LOGS_PER_COMPANY
    window = _LOG_WINDOW_DAYS * _MS_PER_DAY
    for lid in range(1, total + 1):
        level, logger, template = rng.choices(_LOG_EVENTS, _LOG_WEIGHTS)[0]
        company = rng.choice(world.companies)
        user = world.user(rng.choice(world.company_users(company.id)))
        inc = world.incidents[rng.randrange(len(world.incidents))]
        method = rng.choice(("GET", "GET", "GET", "POST", "PATCH"))
        fields = {
            "method": method, "path": rng.choice(_PATHS).format(id=inc.id),
            "status": rng.choice((200, 200, 201, 304, 404)),
            "ms": rng.randint(3, 2500), "email": user.email, "ip": _ip(rng), "attempt": rng.randint(1, 5),
            "prompt": f"{rng.choice(_PROMPT_TASKS)[0]}@v{rng.randint(1, 3)}", "chars": rng.randint(600, 4000),
            "reference": _reference(inc), "request_id": _uuid(rng), "retry": rng.choice((1, 2, 4, 8)),
            "company_id": company.id, "domain": company.domain, "error": rng.choice(_ERRORS),
        }  # fmt: skip
        context: dict[str, Any] = {
            "request_id": fields["request_id"], "user_id": user.id, "ip": fields["ip"],
            "http": {"method": method, "path": fields["path"], "status": fields["status"],
                     "user_agent": rng.choice(_USER_AGENTS)},
            "duration_ms": fields["ms"], "host": f"web-{rng.randint(1, 6)}", "release": "2.14.1",
            "env": "production",
        }  # fmt: skip
        if level == "ERROR":
            error = str(fields["error"])
            context["exception"] = {"type": error.split("(")[0], "traceback": _traceback(rng, error)}
        system = rng.random() < 0.15  # background jobs and health checks belong to no tenant
        created = -window + lid * window // (total + 1) + rng.randint(0, 999)
        tenant = None if system else company.id
        yield lid, tenant, level, logger, template.format(**fields), _json(context), _at(created)


def _traceback(rng: random.Random, error: str) -> str:
    frames = ("app/worker.py", "run", "app/ai/client.py", "complete", "httpx/_client.py", "send",
              "app/narratives/summarize.py", "summarize", "app/webhooks/deliver.py", "post")  # fmt: skip
    lines = ["Traceback (most recent call last):"]
    for i in range(0, len(frames), 2):
        lines.append(f'  File "/srv/app/{frames[i]}", line {rng.randint(20, 400)}, in {frames[i + 1]}')
    lines.append(error)
    return "\n".join(lines)


#: Table names in foreign-key order: every table comes after the tables it references.
DEMO_TABLES: tuple[str, ...] = tuple(t.name for t in _TABLES)


# --------------------------------------------------------------------------------------
# Building, through the dialect's target.
# --------------------------------------------------------------------------------------


def build(
    conn: Any,
    dialect: str,
    scale: int = 1,
    *,
    progress: Callable[[str, int], None] | None = None,
    replace: bool = False,
) -> dict[str, int]:
    """(Re)create the demo tables in ``conn``'s database and fill them; return rows per table.

    The database must be empty or hold exactly the demo's tables (an earlier demo), unless
    ``replace``: a table of the user's that happens to share a demo table's name would
    otherwise lose its rows (UsageError before anything is dropped).

    ``dialect`` is ``"postgresql"`` (a psycopg 3 connection), ``"mysql"`` (MySQLdb or
    PyMySQL) or ``"sqlite"`` (``sqlite3``). Only the demo's own tables are dropped, child
    tables first. Each table is committed once filled and then reported to ``progress`` as
    ``(table, rows)``, so a long build shows steady progress and a failure keeps what was done.

    Foreign keys are added after the data where that is the dialect's fast path
    (:attr:`sqlsnap.targets.Target.keys_after_load`: PostgreSQL), else created with the
    tables. Driver errors arrive as :class:`sqlsnap.errors.SnapError`.
    """
    if dialect not in _DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {', '.join(_DIALECTS)}")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    world = _World(scale)
    target = attach(conn, dialect)
    existing = set(target.table_names())
    ours = {t.name for t in _TABLES}
    if existing and existing != ours and not replace:
        clash = sorted(existing & ours)
        others = sorted(existing - ours)
        shown = ", ".join((clash or others)[:5]) + (" ..." if len(clash or others) > 5 else "")
        what = f"tables of the demo's names ({shown})" if clash else f"other tables ({shown})"
        raise UsageError(f"the target database is not empty: it holds {what}; build the demo in an "
                         "empty database, or give --replace to drop and rebuild the demo's tables there")
    tables = [(t, _model_table(t, dialect)) for t in _TABLES]
    keys_later = target.keys_after_load
    for t in reversed(_TABLES):  # children first
        target.drop_table(t.name)
    for t, table in tables:
        checks = (t.check,) if t.check else ()
        target.create_table(table, with_foreign_keys=not keys_later, unique=t.unique, checks=checks)
    target.commit()
    counts: dict[str, int] = {}
    for t, table in tables:
        counts[t.name] = target.load(table, t.rows(world))
        target.commit()
        if progress is not None:
            progress(t.name, counts[t.name])
    if keys_later:
        for _t, table in tables:
            target.add_foreign_keys(table)
        target.commit()
    return counts


def table_row_counts(scale: int) -> dict[str, int]:
    """The counts :func:`build` returns for ``scale``, from the plan alone (well under a second)."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    world = _World(scale)
    incidents = world.incidents
    return {
        "companies": len(world.companies),
        "sites": len(world.sites),
        "users": len(world.users),
        "sessions": sum(u.sessions for u in world.users),
        "oauth_accounts": sum(u.oauth_provider is not None for u in world.users),
        "incidents": len(incidents),
        "participants": sum(len(i.participants) for i in incidents),
        "incident_narratives": sum(len(i.phases) for i in incidents),
        "clarification_questions": sum(i.questions for i in incidents),
        "clarification_answers": sum(i.answered for i in incidents),
        "incident_analyses": sum(i.analysed for i in incidents),
        "incident_classifications": sum(i.classifications for i in incidents),
        "ai_prompts": len(_PROMPT_TASKS) * len(_PROMPT_VERSIONS),
        "ai_request_logs": sum(len(i.ai_calls) for i in incidents),
        "workflow_handoffs": sum(len(i.stages) for i in incidents),
        "debug_logs": len(world.companies) * _DEBUG_LOGS_PER_COMPANY,
    }
