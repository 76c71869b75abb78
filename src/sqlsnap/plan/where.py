"""``--where "TABLE.COLUMN OP VALUE"``: a small hand-written parser from text to
:class:`~sqlsnap.plan.filters.Condition` s. Nothing of the text ever reaches SQL: the
identifiers become names that the plan checks against the schema, the values become typed
Python values that the driver binds. Whatever does not fit the grammar is refused.

Grammar (keywords in any case)::

    where      := column op value | column "in" "(" value ("," value)* ")"
                | column "between" value "and" value | column "is" ["not"] "null"
    column     := name ("." name)+          -- the last name is the column, the rest the table
    name       := [A-Za-z_][A-Za-z0-9_$]* | '"' ( [^"] | '""' )+ '"'
    op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    value      := number | "'" ( [^'] | "''" )* "'" | "true" | "false"

Numbers without a point or exponent are ints, others Decimals (exact, never a float);
``null`` is only accepted in ``is null`` / ``is not null`` (``= null`` is never true in SQL).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ..errors import UsageError
from .filters import Condition, RowFilter

_EXAMPLE = 'write it as TABLE.COLUMN OP VALUE, e.g. --where "companies.id = 42" or ' \
           "--where \"incidents.status in ('open', 'closed')\""

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<op><=|>=|<>|!=|=|<|>)
  | (?P<punct>[.,()])
""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise UsageError(f"cannot read --where {text!r} at {text[pos:pos + 10]!r}; {_EXAMPLE}")
        kind = m.lastgroup or ""
        if kind != "space":
            out.append((kind, m.group()))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def fail(self, expected: str) -> UsageError:
        got = self.toks[self.i][1] if self.i < len(self.toks) else "the end"
        return UsageError(f"cannot read --where {self.text!r}: expected {expected}, found {got!r}; "
                          + _EXAMPLE)

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str, value: str | None = None, expected: str = "") -> str:
        tok = self.peek()
        if tok is None or tok[0] != kind or (value is not None and tok[1].lower() != value):
            raise self.fail(expected or value or kind)
        self.i += 1
        return tok[1]

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "word" and tok[1].lower() == word:
            self.i += 1
            return True
        return False

    def name(self) -> str:
        tok = self.peek()
        if tok is not None and tok[0] == "word":
            self.i += 1
            return tok[1]
        if tok is not None and tok[0] == "quoted":
            self.i += 1
            return tok[1][1:-1].replace('""', '"')
        raise self.fail("a table or column name")

    def value(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise self.fail("a value")
        kind, text = tok
        if kind == "number":
            self.i += 1
            return int(text) if re.fullmatch(r"[-+]?\d+", text) else Decimal(text)
        if kind == "string":
            self.i += 1
            return text[1:-1].replace("''", "'")
        if kind == "word" and text.lower() in ("true", "false"):
            self.i += 1
            return text.lower() == "true"
        if kind == "word" and text.lower() == "null":
            raise UsageError(f"--where {self.text!r}: compare with null as 'is null' or 'is not null'")
        raise self.fail("a value (a number, 'quoted text', true or false)")

    def parse(self) -> tuple[str, Condition]:
        names = [self.name()]
        while (tok := self.peek()) is not None and tok == ("punct", "."):
            self.i += 1
            names.append(self.name())
        if len(names) < 2:
            raise UsageError(f"--where {self.text!r} names no table; {_EXAMPLE}")
        table, column = ".".join(names[:-1]), names[-1]
        tok = self.peek()
        values: tuple[Any, ...]
        if tok is not None and tok[0] == "op":
            self.i += 1
            op = "!=" if tok[1] == "<>" else tok[1]
            values = (self.value(),)
        elif self.keyword("in"):
            op = "in"
            self.take("punct", "(", "'('")
            items = [self.value()]
            while self.peek() == ("punct", ","):
                self.i += 1
                items.append(self.value())
            self.take("punct", ")", "',' or ')'")
            values = tuple(items)
        elif self.keyword("between"):
            op = "between"
            low = self.value()
            self.take("word", "and", "'and'")
            values = (low, self.value())
        elif self.keyword("is"):
            op = "is not null" if self.keyword("not") else "is null"
            self.take("word", "null", "'null'")
            values = ()
        else:
            raise self.fail("an operator (=, !=, <, <=, >, >=, in, between, is null, is not null)")
        if self.i != len(self.toks):
            raise self.fail("the end")
        return table, Condition(column, op, values)


def parse_condition(text: str) -> tuple[str, Condition]:
    """``"companies.id = 42"`` -> ``("companies", Condition("id", "=", (42,)))``."""
    return _Parser(text).parse()


def parse_where(texts: Iterable[str]) -> dict[str, RowFilter]:
    """Several ``--where`` texts as a row filter per table; conditions on one table are AND-ed."""
    by_table: dict[str, list[Condition]] = {}
    for text in texts:
        table, condition = parse_condition(text)
        by_table.setdefault(table, []).append(condition)
    return {table: RowFilter(tuple(conds)) for table, conds in by_table.items()}
