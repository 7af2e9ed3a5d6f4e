"""Parsing and validation of Kafka order records into the raw layer's rows, as Spark Column
expressions only (no Python UDFs: they would serialise every row through Python).

Every record ends up in exactly one place of the raw sink: a valid row (`verdict=valid`), or a
quarantine row (`verdict=quarantined`) with the untouched Kafka value and key as bytes, a
readable rendering of each, and the reason it was rejected. The verdict is the contract's:
its JSON Schema read exactly (`shopstream.spark.strict_json`: types as written, no coercion) and
its `x-rules`, each reason naming the rule it applies; tests/test_hostile_input.py proves parity
with an independent JSON Schema validator.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType, StringType, StructField, StructType

from shopstream.config import MAX_AHEAD_DAYS, QUARANTINED, VALID, VERDICT, lateness_days
from shopstream.contract import (
    CONTRACT,
    EVENT_IDENTITY,
    MAX_MONEY,
    MAX_QUANTITY,
    MONEY_PRECISION,
    MONEY_SCALE,
    ORDER_FIELD_NAMES,
    ORDER_STATUSES,
    REQUIRED_IDS,
)
from shopstream.metrics import REVENUE_SIGN
from shopstream.spark import strict_json as sj

CORRUPT = "_corrupt_record"
LINEAGE_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")
# Raw layer: the event fields (timestamp parsed to a UTC timestamp), lineage, and the partition.
RAW_COLUMNS = (*ORDER_FIELD_NAMES, *LINEAGE_COLUMNS, "date")
# What only a quarantined record fills: its Kafka value and key untouched (binary) and as text
# any tool can read (invalid UTF-8 replaced by U+FFFD), and why it was rejected.
REJECTED_COLUMNS = ("value", "value_bytes", "reason", "kafka_key", "key_bytes")
QUARANTINE_COLUMNS = (*REJECTED_COLUMNS, *LINEAGE_COLUMNS, "date")
# The raw sink holds both kinds of row: each kind's own columns are null in the other's rows.
SINK_COLUMNS = (*ORDER_FIELD_NAMES, *REJECTED_COLUMNS, *LINEAGE_COLUMNS, VERDICT, "date")

# A valid price as the raw layer keeps it (6 decimals more than money: the order-status table's
# type since session 6), and money.
WIRE_PRICE = DecimalType(MONEY_PRECISION + 6, MONEY_SCALE + 6)
MONEY = DecimalType(MONEY_PRECISION, MONEY_SCALE)
_NUMBER_FIELDS = tuple(n for n, spec in CONTRACT["properties"].items() if spec["type"] != "string")
# RFC 3339 date-time as JSON Schema's `format` reads it (either case of T and Z); `\z`: the very
# end, where Java's `$` also matches before a final line break.
RFC3339 = (
    r"^\d{4}-(0[1-9]|1[0-2])-\d{2}[Tt]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)\z"
)


def _wire() -> Column:
    """The record's members by the contract's fields: each one's variant type (`t_<name>`),
    strings as strings, numbers as `strict_json.NARROW_DECIMAL` (null if wider) and, when
    written as doubles, also as `WIDE_DECIMAL` (`wide_<name>`)."""
    member = lambda n: F.col("members")[n]  # noqa: E731
    types = {n: sj.member_type(member(n)) for n in ORDER_FIELD_NAMES}
    # Values cast regardless of type (a number read as a string): the rules check the type first.
    values = {
        n: F.try_variant_get(member(n), "$", sj.NARROW_DECIMAL if n in _NUMBER_FIELDS else "string")
        for n in ORDER_FIELD_NAMES
    }
    values |= {
        f"wide_{n}": F.when(types[n] == "DOUBLE", F.try_variant_get(member(n), "$", sj.WIDE_DECIMAL))
        for n in _NUMBER_FIELDS
    }
    return F.struct(*(t.alias(f"t_{n}") for n, t in types.items()), *(v.alias(n) for n, v in values.items()))


def _too_late(max_days: int) -> Column:
    """The event reached Kafka more than `max_days` after its time (the lateness policy in
    `shopstream.config`). Judged by the record's Kafka timestamp, not the clock of the Spark job,
    so a replay after a crash decides the same."""
    return F.col("event_time") < F.col("kafka_timestamp") - F.make_dt_interval(F.lit(max_days))


def _member_reason(name: str) -> Column:
    """Why member `name` breaks the JSON Schema's type (or is missing), or null."""
    w = F.col("wire")
    kind, wanted = w[f"t_{name}"], CONTRACT["properties"][name]["type"]
    fits = kind == "STRING" if wanted == "string" else sj.is_number(kind)
    return F.when(kind.isNull() | (kind == "VOID"), F.lit(f"missing {name}")).when(
        ~fits, F.concat(F.lit(f"{name} has the wrong type: "), sj.json_type(kind), F.lit(f", not {wanted}"))
    )


def _number_reason() -> Column:
    """Why quantity or unit_price breaks the schema's bounds or rule `money`, or null."""
    w = F.col("wire")
    quantity, price = w["quantity"], w["unit_price"]
    wide_quantity, wide_price = w["wide_quantity"], w["wide_unit_price"]
    shown = lambda n: sj.text_of(F.col("members")[n])  # noqa: E731
    # A double's product first (cheap), the exact product only near the bound.
    near_bound = quantity.cast("double") * price.cast("double") > float(MAX_MONEY) * 0.999
    return (
        F.when(
            (sj.plain_scale(w["t_quantity"]) > 0) | (quantity != F.floor(quantity))
            | (wide_quantity != F.floor(wide_quantity)),
            F.concat(F.lit("quantity is not a whole number: "), shown("quantity")),
        )
        .when(quantity < 1, F.concat(F.lit("quantity not positive: "), shown("quantity")))
        .when(
            quantity.isNull() | (quantity > MAX_QUANTITY),
            F.concat(F.lit(f"quantity above the maximum {MAX_QUANTITY}: "), shown("quantity")),
        )
        .when(price <= 0, F.concat(F.lit("unit_price not positive: "), shown("unit_price")))
        .when(
            (sj.plain_scale(w["t_unit_price"]) > MONEY_SCALE) | (price != F.round(price, MONEY_SCALE))
            | (wide_price != F.round(wide_price, MONEY_SCALE)),
            F.concat(F.lit(f"unit_price has more than {MONEY_SCALE} decimals: "), shown("unit_price")),
        )
        .when(
            price.isNull() | (price > MAX_MONEY),
            F.concat(F.lit(f"unit_price above {MAX_MONEY} (rule money): "), shown("unit_price")),
        )
        .when(
            near_bound & (quantity * price > MAX_MONEY),
            F.concat(F.lit(f"amount quantity x unit_price above {MAX_MONEY} (rule money): "),
                     shown("quantity"), F.lit(" x "), shown("unit_price")),
        )
    )  # fmt: skip


def _timestamp_reason() -> Column:
    """Why the timestamp is not an RFC 3339 date-time of a real instant (rule `timestamp`), or null."""
    stamp = F.col("wire")["timestamp"]
    return F.when(
        ~stamp.rlike(RFC3339) | stamp.startswith("0000") | F.col("event_time").isNull(),
        F.concat(F.lit("bad timestamp: "), stamp),
    )


def _rejection_reason(max_lateness_days: int) -> Column:
    """The first rule a record breaks, or null. CASE WHEN evaluates lazily, so each rule runs only
    for records that passed the ones before."""
    w = F.col("wire")
    text = F.col("value")
    return F.coalesce(
        F.when(text.isNull(), F.lit("empty message")),
        sj.json_problem(text, F.col("json"), F.col("members")),
        *(_member_reason(n) for n in ORDER_FIELD_NAMES),
        F.when(
            F.greatest(*(~w[n].rlike(sj.HAS_NON_BLANK) for n in REQUIRED_IDS)),
            F.lit("empty id"),
        ),
        F.when(
            ~w["order_status"].isin(*ORDER_STATUSES),
            F.concat(F.lit("unknown order_status "), w["order_status"]),
        ),
        _number_reason(),
        _timestamp_reason(),
        F.when(
            F.col("event_time") > F.col("kafka_timestamp") + F.make_dt_interval(F.lit(MAX_AHEAD_DAYS)),
            F.concat(
                F.lit(f"too early: more than {MAX_AHEAD_DAYS} day ahead of its arrival, at "),
                F.col("kafka_timestamp").cast("string"),
            ),
        ),
        F.when(
            _too_late(max_lateness_days),
            F.concat(
                F.lit(f"too late: more than {max_lateness_days} days after its time, at "),
                F.col("kafka_timestamp").cast("string"),
            ),
        ),
    )


def kafka_columns(kafka_records: DataFrame) -> DataFrame:
    """Kafka source rows -> the record's value as text (`value`, as received: may not be UTF-8),
    its key and value untouched (`key_bytes`, `value_bytes`), and its lineage columns."""
    return kafka_records.select(
        F.col("key").alias("key_bytes"),
        F.col("value").alias("value_bytes"),
        F.col("value").cast("string").alias("value"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
    )


def _once(frame: DataFrame, column: Column, name: str) -> DataFrame:
    """Adds `column` as `name`, evaluated once per row: inside a generator (explode of a
    one-element array). As a plain column the optimizer inlines it into every reference, e.g.
    from_json into each of the ~30 field references of the rules, several times slower."""
    return frame.select("*", F.explode(F.array(column)).alias(name))


def with_parsed_value(records: DataFrame, schema: StructType) -> DataFrame:
    """Adds `event`, the text `value` parsed once with `schema` plus a `_corrupt_record` field
    (Spark's lenient reading, for the order_updates topic)."""
    with_corrupt = StructType([*schema.fields, StructField(CORRUPT, StringType(), True)])
    return _once(records, F.from_json("value", with_corrupt, {"mode": "PERMISSIVE"}), "event")


def _event() -> Column:
    """The contract's fields of a valid record, typed: quantity an int, unit_price `WIRE_PRICE`."""
    w = F.col("wire")
    typed = {"quantity": w["quantity"].cast("int"), "unit_price": w["unit_price"].cast(WIRE_PRICE)}
    return F.struct(*(typed.get(n, w[n]).alias(n) for n in ORDER_FIELD_NAMES))


def parse_orders(kafka_records: DataFrame, max_lateness_days: int | None = None) -> DataFrame:
    """Kafka source rows (key, value, topic, partition, offset, timestamp) -> one row per record
    with the parsed `event` (null fields where invalid), its lineage, a `date` partition and a
    `reason` (null when valid). `max_lateness_days`: default the lateness policy's
    (`shopstream.config.lateness_days`)."""
    lateness = lateness_days() if max_lateness_days is None else max_lateness_days
    parsed = _once(kafka_columns(kafka_records), sj.parse(F.col("value")), "json")
    parsed = _once(parsed, sj.members(F.col("json"), ORDER_FIELD_NAMES), "members")
    parsed = _once(parsed, _wire(), "wire")
    parsed = parsed.withColumn("event_time", F.try_to_timestamp(F.upper(F.col("wire")["timestamp"])))
    parsed = parsed.withColumn("reason", _rejection_reason(lateness))
    parsed = parsed.withColumn("event", F.when(F.col("reason").isNull(), _event()))
    # Quarantined records may have no usable event time: file them by their arrival date.
    return parsed.withColumn("date", F.to_date(F.coalesce("event_time", "kafka_timestamp")))


def _event_field(name: str) -> Column:
    """A raw-layer event column: the parsed field (the timestamp as a timestamp, the price as
    money), unnamed."""
    if name == "timestamp":
        return F.col("event_time")
    return F.col("event")[name].cast(MONEY) if name == "unit_price" else F.col("event")[name]


def rejected_record() -> dict[str, Column]:
    """A quarantined record's copy (of `kafka_columns` rows): its value and key untouched, and
    each as text any tool reads (invalid UTF-8 replaced)."""
    key = F.col("key_bytes")
    return {"value": sj.readable(F.col("value")), "value_bytes": F.col("value_bytes"),
            "kafka_key": sj.readable(key.cast("string")), "key_bytes": key}  # fmt: skip


def sink_rows(parsed: DataFrame) -> DataFrame:
    """Every parsed record as one row of the raw sink (SINK_COLUMNS): the event's fields when
    valid, else its untouched value and reason; `verdict` says which. One frame, so that one query
    reads and parses each record once and one commit log covers both kinds."""
    valid = F.col("reason").isNull()
    columns = {n: F.when(valid, _event_field(n)) for n in ORDER_FIELD_NAMES}
    columns |= {name: F.when(~valid, column) for name, column in rejected_record().items()}
    columns["reason"] = F.col("reason")
    columns[VERDICT] = F.when(valid, F.lit(VALID)).otherwise(F.lit(QUARANTINED))
    return parsed.select(*(columns[n].alias(n) if n in columns else F.col(n) for n in SINK_COLUMNS))


def event_cents() -> Column:
    """An event's amount in integer cents, exact: `decimal(MONEY_PRECISION, 0)`, which rule
    `money` makes wide enough for any valid event; sum it as a decimal (no day's sum overflows)."""
    return (F.col("quantity") * F.col("unit_price") * 10**MONEY_SCALE).cast(f"decimal({MONEY_PRECISION},0)")


def revenue_sign() -> Column:
    """+1, -1 or 0 for an event's status by the revenue rule (`shopstream.metrics.REVENUE_SIGN`)."""
    sign = F.lit(0)
    for status, value in REVENUE_SIGN.items():
        sign = F.when(F.col("order_status") == status, F.lit(value)).otherwise(sign)
    return sign


def redelivery_window_days() -> int:
    """How long after an event's first delivery the stream still recognises a re-delivery: the
    lateness horizon plus a day. A valid re-delivery reaches Kafka at most `lateness_days` after
    the event's time (later ones are quarantined as too late), and the first delivery came no
    earlier than a day before that time (events stamped further ahead are quarantined as too
    early), so the window covers every valid copy: a sink written with it holds each event once."""
    return lateness_days() + MAX_AHEAD_DAYS


def without_redeliveries(sink: DataFrame, window_days: int | None = None) -> DataFrame:
    """Sink rows (`sink_rows` of a stream) with each valid event once per identity
    (`EVENT_IDENTITY`): later copies delivered within `window_days` (default
    `redelivery_window_days`) of the first are dropped. Quarantined records are all kept (each
    is keyed by its own Kafka offset).

    The watermark is on the Kafka timestamp, not the event's time: arrival time only grows, so
    no row is ever dropped as late by the watermark (an event-time watermark would drop the
    late events the lateness policy promises to keep). State: the keys of the window's events,
    in the RocksDB state store (spark-defaults)."""
    valid = F.col(VERDICT) == VALID
    identity = F.when(valid, F.struct(*EVENT_IDENTITY))
    record = F.when(~valid, F.struct("kafka_topic", "kafka_partition", "kafka_offset"))
    window = redelivery_window_days() if window_days is None else window_days
    return (
        sink.withColumns({"_identity": identity, "_record": record})
        .withWatermark("kafka_timestamp", f"{window} days")
        .dropDuplicatesWithinWatermark(["_identity", "_record"])
        .drop("_identity", "_record")
    )


def valid_rows(sink: DataFrame) -> DataFrame:
    """The raw layer proper: the valid rows of the sink (`sink_rows`, or the sink read back),
    without the columns only quarantined records fill."""
    return sink.where(F.col(VERDICT) == VALID).drop(*REJECTED_COLUMNS, VERDICT)
