"""Exact JSON reading of a Kafka record, as Spark Column expressions: what RFC 8259 and the
contract's rules `utf-8`, `one-object`, `unicode` and `numbers` admit, nothing more.

Spark's JSON reader (`from_json`) is lenient where the contract is not: it takes single quotes,
a string for a number, an object's text for a string, and ignores text after the value. Here a
record is parsed once into a VARIANT (`try_parse_json`: strict JSON, duplicate names refused),
its trailing text is probed, and each member's JSON type is read from the variant, so the
rules in `shopstream.spark.orders` can demand exact types. Numbers keep the variant's reading:
plain decimals exactly (the variant's DECIMAL, trailing zeros dropped, so its scale is the
number's), exponents and longer numbers as doubles (rule `numbers`).

Everything stays in the JVM: a Python UDF would send every record through a Python worker.
"""

from __future__ import annotations

import sys

from pyspark.sql import Column
from pyspark.sql import functions as F

BYTE_ORDER_MARK = "\ufeff"
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT")
# Numbers as the rules read them: any the contract accepts fits NARROW (long-backed, cheap),
# 8 decimals being more than money has; a double is also read WIDE, whose 18 decimals show the
# fraction its shortest form has (a plain-notation number's decimals are its type's scale).
NARROW_DECIMAL = "decimal(18,8)"
WIDE_DECIMAL = "decimal(38,18)"

# A \u escape (preceded by an even number of backslashes, so not itself escaped) of a high
# surrogate not followed by a low one, or of a low surrogate not preceded by a high one.
_ESCAPED = r"(?<!\\)(?:\\\\)*"
_HIGH = r"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = r"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
LONE_SURROGATE = f"{_ESCAPED}(?:{_HIGH}(?!{_LOW})|(?<!{_HIGH}){_LOW})"

# The contract's `pattern: "\\S"` as its validator (Python's `re`) reads it: any character that
# is not whitespace by `str.isspace`, a wider set than Java's `\s`.
_PYTHON_WHITESPACE = "".join(f"\\u{c:04x}" for c in range(sys.maxunicode + 1) if chr(c).isspace())
HAS_NON_BLANK = f"[^{_PYTHON_WHITESPACE}]"


def parse(text: Column) -> Column:
    """The record's text as a VARIANT, or null unless it is valid UTF-8 holding strict JSON
    (Jackson reads the first value only: see `has_one_value` for the rest)."""
    return F.when(F.is_valid_utf8(text), F.try_parse_json(text))


def has_one_value(text: Column) -> Column:
    """Whether `text` holds nothing after its first JSON value but whitespace.

    The parser stops after the first value. Wrapped as `[text,0]` and `[text,0,0]`, a single
    value makes arrays of exactly 2 and 3 elements; text after it either breaks the arrays, or
    closes them early, where both probes count the same elements."""
    length = lambda suffix: F.json_array_length(F.concat(F.lit("["), text, F.lit(suffix)))  # noqa: E731
    return F.coalesce((length(",0]") == 2) & (length(",0,0]") == 3), F.lit(False))


def members(json: Column, names: tuple[str, ...]) -> Column:
    """The object's members `names` as a struct of VARIANTs (a JSON null is a VARIANT null, an
    absent member SQL NULL), or null when `json` is not an object. One cast of the object: a
    lookup per member, or `schema_of_variant` of the whole object, cost more."""
    return F.try_variant_get(json, "$", "struct<" + ",".join(f"`{n}`:variant" for n in names) + ">")


def json_problem(text: Column, json: Column, object_members: Column) -> Column:
    """Why `text` (with `json`, its `parse`, and `object_members`, its `members`) is not one JSON
    object by the contract's rules `utf-8`, `one-object` and `unicode`, or null. A null text is
    the caller's case."""
    unparsed = (
        F.when(~F.is_valid_utf8(text), F.lit("not UTF-8 text (rule utf-8)"))
        .when(text.startswith(BYTE_ORDER_MARK), F.lit("byte-order mark before the JSON (rule utf-8)"))
        .otherwise(F.lit("invalid JSON (rule one-object)"))
    )
    return (
        F.when(json.isNull(), unparsed)
        .when(~has_one_value(text), F.lit("invalid JSON (rule one-object)"))
        .when(object_members.isNull(), F.lit("not a JSON object (rule one-object)"))
        .when(
            text.contains("\\u") & text.rlike(LONE_SURROGATE),
            F.lit("a lone surrogate escaped in a string (rule unicode)"),
        )
    )


def member_type(member: Column) -> Column:
    """A member's variant type (e.g. STRING, BIGINT, DECIMAL(4,2), DOUBLE, VOID for a JSON null,
    OBJECT<...>), null when absent."""
    return F.schema_of_variant(member)


def json_type(variant_type: Column) -> Column:
    """A `member_type` as the JSON type it was written as (string, number, boolean, null, object,
    array)."""
    return (
        F.when(variant_type == "STRING", F.lit("string"))
        .when(is_number(variant_type), F.lit("number"))
        .when(variant_type == "BOOLEAN", F.lit("boolean"))
        .when(variant_type == "VOID", F.lit("null"))
        .when(variant_type.startswith("OBJECT"), F.lit("object"))
        .otherwise(F.lit("array"))
    )


def is_number(variant_type: Column) -> Column:
    return variant_type.isin(*INTEGER_TYPES, "DOUBLE", "FLOAT") | variant_type.startswith("DECIMAL(")


def plain_scale(variant_type: Column) -> Column:
    """The decimals of a number written in plain notation (its DECIMAL's scale, trailing zeros
    dropped), 0 for an integer or a double: a double's decimals are its value's to test."""
    scale = F.regexp_extract(variant_type, r"^DECIMAL\(\d+,(\d+)\)$", 1)
    return F.when(variant_type.startswith("DECIMAL("), scale.cast("int")).otherwise(F.lit(0))


def text_of(member: Column) -> Column:
    """A member as JSON text, for a reason a person reads."""
    return F.to_json(member)


def readable(text: Column) -> Column:
    """`text` with any invalid UTF-8 replaced by U+FFFD: safe for a STRING column."""
    return F.make_valid_utf8(text)
