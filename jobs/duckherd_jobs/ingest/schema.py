"""Schema evolution: which column type a raw table keeps when a load brings another one.

The rule, in order:

1. Same type, or the new data has no type (all NULL): keep the column as it is.
2. Numbers widen along INTEGER -> BIGINT -> HUGEINT (unsigned to the next signed type that
   holds them), and any mix of integers, decimals and floats becomes DOUBLE.
3. Time widens DATE -> TIMESTAMP -> TIMESTAMPTZ.
4. VARCHAR absorbs values that arrived as JSON *strings* and were typed by inference
   (DATE, TIME, TIMESTAMP[TZ], UUID, JSON): their text is exactly what the source sent, so
   turning the column into VARCHAR loses nothing. An existing VARCHAR column takes any new
   type (its values are stored as text).
5. Everything else is incompatible — a number or boolean column receiving text, a nested
   type changing shape — and fails the run naming the table and the column: silently turning
   `revenue` into text would break every model downstream.
"""

from __future__ import annotations

import re

_SIGNED = {"TINYINT": 1, "SMALLINT": 2, "INTEGER": 3, "BIGINT": 4, "HUGEINT": 5}
_UNSIGNED = {"UTINYINT": 1, "USMALLINT": 2, "UINTEGER": 3, "UBIGINT": 4, "UHUGEINT": 5}
_SIGNED_BY_RANK = {rank: name for name, rank in _SIGNED.items()}
_FLOATS = {"FLOAT", "DOUBLE"}
_TIME_RANK = {"DATE": 1, "TIMESTAMP": 2, "TIMESTAMP WITH TIME ZONE": 3}
_STRING_BORN = {"DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "UUID", "JSON"}
_NULL_TYPES = {"NULL", '"NULL"'}


class IncompatibleType(ValueError):
    """A column cannot hold the new data without losing or reinterpreting values."""


def normalize(kind: str) -> str:
    kind = kind.strip().upper()
    aliases = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE", "INT": "INTEGER", "REAL": "FLOAT"}
    return aliases.get(kind, kind)


def _is_decimal(kind: str) -> bool:
    return re.fullmatch(r"DECIMAL\(\d+,\s*\d+\)", kind) is not None


def _is_number(kind: str) -> bool:
    return kind in _SIGNED or kind in _UNSIGNED or kind in _FLOATS or _is_decimal(kind)


def _wider_integer(a: str, b: str) -> str:
    if a in _SIGNED and b in _SIGNED:
        return a if _SIGNED[a] >= _SIGNED[b] else b
    if a in _UNSIGNED and b in _UNSIGNED:
        return a if _UNSIGNED[a] >= _UNSIGNED[b] else b
    signed, unsigned = (a, b) if a in _SIGNED else (b, a)
    rank = max(_SIGNED[signed], _UNSIGNED[unsigned] + 1)
    if rank > 5:
        raise IncompatibleType(f"{a} and {b} have no common integer type")
    return _SIGNED_BY_RANK[rank]


def widen(current: str, incoming: str) -> str:
    """The type a column must have to hold both its values and the incoming ones."""
    current, incoming = normalize(current), normalize(incoming)
    if current == incoming or incoming in _NULL_TYPES:
        return current
    if current in _NULL_TYPES:
        return incoming
    is_integer = {current, incoming} <= (_SIGNED.keys() | _UNSIGNED.keys())
    if is_integer:
        return _wider_integer(current, incoming)
    if _is_number(current) and _is_number(incoming):
        return "DOUBLE"
    if current in _TIME_RANK and incoming in _TIME_RANK:
        return current if _TIME_RANK[current] >= _TIME_RANK[incoming] else incoming
    if current == "VARCHAR":
        return current
    if incoming == "VARCHAR" and current in _STRING_BORN:
        return "VARCHAR"
    raise IncompatibleType(f"{current} cannot take {incoming} values")


def column_type_for_new_column(kind: str) -> str:
    """A column created from data that was all NULL has no type yet: text holds anything."""
    return "VARCHAR" if normalize(kind) in _NULL_TYPES else kind
