"""The contract's verdict on a record's bytes, read independently of the ingest: Python's `json`
(strict: duplicate names and NaN refused), the `jsonschema` package (Draft 2020-12, formats
checked by rfc3339-validator) against contracts/order_event.schema.json, and the contract's
`x-rules` spelled out here in plain Python. Imports nothing of shopstream's Spark code: it is the
test oracle of the ingest's verdicts."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from jsonschema import Draft202012Validator
from jsonschema.validators import extend

from shopstream.config import LATENESS_DAYS, MAX_AHEAD_DAYS
from shopstream.contract import CONTRACT, MAX_MONEY, MONEY_SCALE

LATENESS = timedelta(days=LATENESS_DAYS)  # the policy's default horizon (the tests never change it)
MAX_AHEAD = timedelta(days=MAX_AHEAD_DAYS)
MAX_OFFSET = timedelta(hours=18)
MAX_NUMBER_TEXT = 1000
PLAIN_DIGITS = 38


def _is_integer(_checker, instance) -> bool:
    """JSON Schema's `integer`: any number with a zero fractional part (1.0 and 1e2 are)."""
    if isinstance(instance, bool):
        return False
    if isinstance(instance, Decimal):
        return instance.is_finite() and instance == instance.to_integral_value()
    return isinstance(instance, int) or (isinstance(instance, float) and instance.is_integer())


Validator = extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)
SCHEMA = Validator(CONTRACT, format_checker=Draft202012Validator.FORMAT_CHECKER)
assert "date-time" in Draft202012Validator.FORMAT_CHECKER.checkers, "pip install rfc3339-validator"


class Refused(ValueError):
    """The record breaks one of the contract's rules on JSON text."""


def _number(text: str) -> Decimal:
    """Rule `numbers`: plain decimals exactly, exponents and longer numbers as the nearest double."""
    if len(text) > MAX_NUMBER_TEXT:
        raise Refused("numbers")
    digits = sum(c.isdigit() for c in text)
    if "e" in text.lower() or digits > PLAIN_DIGITS:
        value = float(text)
        if value != value or value in (float("inf"), float("-inf")):
            return Decimal("Infinity")
        return Decimal(repr(value))
    return Decimal(text)


def _integer(text: str) -> int | Decimal:
    if len(text) > MAX_NUMBER_TEXT:
        raise Refused("numbers")
    return int(text) if sum(c.isdigit() for c in text) <= PLAIN_DIGITS else _number(text)


def _unique_names(pairs: list[tuple[str, object]]) -> dict:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise Refused("one-object: duplicate name")
    return dict(pairs)


def _no_constants(name: str):
    raise Refused(f"one-object: {name}")


def _strings(value):
    """Every string of a JSON value, member names included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for name, member in value.items():
            yield name
            yield from _strings(member)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def parse(record: bytes | None) -> dict:
    """The record as a JSON object, or `Refused` (rules utf-8, one-object, unicode, numbers)."""
    if record is None:
        raise Refused("utf-8: tombstone")
    try:
        text = record.decode("utf-8")  # strict: no BOM stripped, no replacement
        value = json.loads(
            text,
            parse_float=_number,
            parse_int=_integer,
            parse_constant=_no_constants,
            object_pairs_hook=_unique_names,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as error:
        raise Refused(f"not one JSON value: {error}") from error
    for string in _strings(value):
        try:
            string.encode("utf-8")
        except UnicodeEncodeError as error:
            raise Refused("unicode: lone surrogate") from error
    if not isinstance(value, dict):
        raise Refused("not an object")  # the schema says so too; the rules below need a dict
    return value


@dataclass(frozen=True)
class Event:
    """A valid record as the raw layer must hold it."""

    order_id: str
    customer_id: str
    product_id: str
    product_name: str
    category: str
    quantity: int
    unit_price: Decimal
    order_status: str
    region: str
    timestamp: datetime  # UTC, microseconds
    date: date

    @property
    def identity(self) -> tuple[str, str, datetime]:
        return self.order_id, self.order_status, self.timestamp


_OFFSET = re.compile(r"([+-])(\d\d):(\d\d)$")


def _instant(stamp: str) -> datetime:
    """Rule `timestamp` beyond the schema's `date-time` format: no surrounding whitespace, an
    offset of at most 18:00; truncated to microseconds."""
    if stamp != stamp.strip():
        raise Refused("timestamp: whitespace")
    offset = _OFFSET.search(stamp)
    if offset and timedelta(hours=int(offset[2]), minutes=int(offset[3])) > MAX_OFFSET:
        raise Refused("timestamp: offset")
    return datetime.fromisoformat(stamp.upper()).astimezone(UTC)


def verdict(record: bytes | None, arrived: datetime) -> Event | None:
    """The event a record of the orders topic carries, or None if the contract refuses it.
    `arrived`: the record's Kafka timestamp (aware)."""
    try:
        value = parse(record)
    except Refused:
        return None
    if not SCHEMA.is_valid(value):
        return None
    price, quantity = Decimal(value["unit_price"]), Decimal(value["quantity"])
    if price > MAX_MONEY or quantity * price > MAX_MONEY or (price * 10**MONEY_SCALE) % 1:
        return None  # rule money
    try:
        instant = _instant(value["timestamp"])
    except (Refused, ValueError):
        return None
    if instant - arrived > MAX_AHEAD or arrived - instant > LATENESS:
        return None  # rules not-too-early, not-too-late
    fields = {n: value[n] for n in ("order_id", "customer_id", "product_id", "product_name", "category",
                                    "order_status", "region")}  # fmt: skip
    return Event(**fields, quantity=int(quantity), unit_price=price.quantize(Decimal(1).scaleb(-MONEY_SCALE)),
                 timestamp=instant, date=instant.date())  # fmt: skip
