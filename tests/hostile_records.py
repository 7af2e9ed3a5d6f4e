"""Hypothesis strategies of what lands on an orders topic: valid instances of the contract
(hypothesis-jsonschema, and shop-like ones) and mutations of them that a buggy, newer or
misrouted producer writes (wrong and nested types, boundary numbers, NaN, exponents, duplicate
names, unicode, a byte-order mark, invalid UTF-8, huge strings, empty values, tombstones).
Each record is bytes, or None for a tombstone."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from shopstream.contract import CONTRACT, ORDER_FIELD_NAMES, ORDER_STATUSES

# The schema's instances, timestamps left to `timestamps` (the schema's own would be centuries
# away from the record's arrival, so always too late or too early).
_SCHEMA = {**CONTRACT, "properties": {**CONTRACT["properties"], "timestamp": {"type": "string"}}}
_SCHEMA.pop("x-rules")
OFFSETS = ["Z", "z", "+00:00", "+05:30", "-08:00", "+18:00", "-18:00", "+19:00", "+23:59"]


def _rfc3339(at: datetime, zone: str, fraction: str, separator: str) -> str:
    """`at` (UTC) written in the offset `zone`."""
    local = at
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        local = at + sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return local.strftime(f"%Y-%m-%d{separator}%H:%M:%S") + fraction + zone


def timestamps(arrived: datetime) -> st.SearchStrategy[str]:
    """RFC 3339 times around `arrived`: within and just past the lateness and ahead bounds, with
    offsets, fractions of any length and either letter case."""
    moment = st.timedeltas(min_value=timedelta(days=-8), max_value=timedelta(days=1, hours=6))
    return st.builds(
        _rfc3339, moment.map(lambda d: arrived + d), st.sampled_from(OFFSETS),
        st.sampled_from(["", ".1", ".123", ".123456", ".123456789"]), st.sampled_from(["T", "T", "t"]),
    )  # fmt: skip


BAD_TIMESTAMPS = ["2026-12-04", "2026-12-04 10:00:00Z", "2026-12-04T10:00:00", "2026-02-30T00:00:00Z",
                  "2026-12-04T23:59:60Z", "0000-01-01T00:00:00Z", "2026-12-04T10:00:00Z\n",
                  " 2026-12-04T10:00:00Z", "2026-12-04T24:00:00Z", "yesterday", ""]  # fmt: skip
NUMBERS = ["0", "-0", "1", "-1", "1.0", "1.5", "2.50", "1e2", "1E+2", "2.5e0", "12999e-2", "1.2999e2",
           "0.01", "0.001", "0.10", "4.505", "9999999999.99", "9999999999.999", "10000000000",
           "2147483647", "2147483648", "99999999999999999999", "1e400", "-1e400", "1e-400",
           "123456789012345678901234567890123456789012", "NaN", "Infinity", "-Infinity", "01",
           "1.", ".5", "+1", "0x10", "1_000"]  # fmt: skip
ODD_VALUES = [{"code": "US-E"}, ["a"], True, False, None, "10.00", "2", "", " ", "\u3000", "\x1c", 7]


@cache  # from_schema's canonicalisation is slow: build it once
def valid_documents(arrived: datetime) -> st.SearchStrategy[dict]:
    """Contract instances with times around `arrived`: an eighth the schema's own (extra members,
    boundary numbers, any unicode), the rest shop-like with any unicode in names."""
    ids = st.text(min_size=1, max_size=16)
    shop_like = st.fixed_dictionaries({
        "order_id": st.uuids().map(lambda u: f"ORD-{u.hex[:16]}"), "customer_id": ids, "product_id": ids,
        "product_name": st.text(max_size=30), "category": st.text(max_size=12),
        "quantity": st.integers(1, 50), "unit_price": st.decimals("0.01", "5000", places=2).map(float),
        "order_status": st.sampled_from(ORDER_STATUSES), "region": st.text(max_size=6),
    })  # fmt: skip
    documents = st.one_of(*[shop_like] * 7, from_schema(_SCHEMA))  # first: the branch Hypothesis favours
    return st.builds(lambda doc, ts: {**doc, "timestamp": ts}, documents, timestamps(arrived))


def render(doc: dict, draw) -> str:
    """A document as JSON text, its members in any order, spaced and escaped in any style."""
    items = list(doc.items())
    order = draw(st.permutations(range(len(items))))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
    return json.dumps(dict(items[i] for i in order), ensure_ascii=draw(st.booleans()), separators=separators)


def _splice(text: str, name: str, raw: str) -> str:
    """`text` with member `name`'s JSON value replaced by the raw text `raw`."""
    doc = json.loads(text)
    marker = "\u0000MARK\u0000"
    doc[name] = marker
    return json.dumps(doc).replace(json.dumps(marker), raw)


MUTATIONS = [
    *["valid"] * 12,
    "number",
    "odd value",
    "missing",
    "timestamp",
    "status",
    "duplicate",
    "unicode",
    "lone surrogate",
    "bom",
    "bytes",
    "huge",
    "empty",
    "trailing",
    "wrapped",
    "overflow",
]
SURROGATES = ['"\\ud800"', '"x\\udfff"', '"\\\\ud800"', '"\\ud83d\\ude00"']


@st.composite
def records(draw, arrived: datetime) -> bytes | None:
    """One record of the orders topic: valid, or one of the mutations a producer gets wrong."""
    doc = draw(valid_documents(arrived))
    text = render(doc, draw)
    kind = draw(st.sampled_from(MUTATIONS))
    name = draw(st.sampled_from(ORDER_FIELD_NAMES))
    if kind == "number":
        field = draw(st.sampled_from(["quantity", "unit_price"]))
        text = _splice(text, field, draw(st.sampled_from(NUMBERS)))
    elif kind == "odd value":
        doc[name] = draw(st.sampled_from(ODD_VALUES))
        text = render(doc, draw)
    elif kind == "missing":
        doc.pop(name)
        text = render(doc, draw)
    elif kind == "timestamp":
        doc["timestamp"] = draw(st.sampled_from(BAD_TIMESTAMPS))
        text = render(doc, draw)
    elif kind == "status":
        doc["order_status"] = draw(st.sampled_from(["SHIPPED", "new", "", *ORDER_STATUSES]))
        text = render(doc, draw)
    elif kind == "duplicate":
        text = '{"' + name + '": ' + json.dumps(doc[name]) + ", " + text[1:]
    elif kind == "unicode":
        doc[name if isinstance(doc[name], str) else "product_name"] = draw(st.text(min_size=1, max_size=40))
        text = render(doc, draw)
    elif kind == "lone surrogate":
        field = draw(st.sampled_from(["product_name", "order_id"]))
        text = _splice(text, field, draw(st.sampled_from(SURROGATES)))
    elif kind == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    elif kind == "bytes":
        raw = bytearray(text.encode())
        at = draw(st.integers(0, len(raw)))
        raw[at:at] = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc", b"\xfe\xff"]))
        return bytes(raw)
    elif kind == "huge":  # up to 720 KB escaped: within Kafka's 1 MB default
        letter = draw(st.sampled_from(["é", "x", "\U0001f600"]))
        doc["product_name"] = letter * draw(st.integers(10_000, 60_000))
        text = render(doc, draw)
    elif kind == "empty":
        return draw(st.sampled_from([None, b"", b" ", b"{}", b"null", b"[]", b'""', b"\n"]))
    elif kind == "trailing":
        text += draw(st.sampled_from([" ", "\n", " x", "}", "]", " {}", ",0]", "\x00"]))
    elif kind == "wrapped":
        text = draw(st.sampled_from(["[{}]", "  {}  ", "{{}}"])).replace("{}", text, 1)
    elif kind == "overflow":
        doc["quantity"] = draw(st.sampled_from([2147483647, 1_000_000, 1000]))
        doc["unit_price"] = draw(st.sampled_from([9999999999.99, 10_000_000.01, 9_999_999.99]))
        text = render(doc, draw)
    return text.encode("utf-8", "surrogatepass")
