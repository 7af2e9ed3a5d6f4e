"""Parsing and validation of Kafka order records into the raw layer's rows, as Spark Column
expressions only (no Python UDFs: they would serialise every row through Python).

Every record ends up in exactly one place of the raw sink: a valid row (`verdict=valid`), or a
quarantine row (`verdict=quarantined`) with the untouched Kafka value and the reason it was
rejected.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType, StringType, StructField, StructType

from shopstream.config import MAX_AHEAD_DAYS, QUARANTINED, VALID, VERDICT, lateness_days
from shopstream.contract import (
    EVENT_IDENTITY,
    MONEY_PRECISION,
    MONEY_SCALE,
    ORDER_FIELD_NAMES,
    ORDER_STATUSES,
    REQUIRED_IDS,
    order_spark_schema,
)
from shopstream.metrics import REVENUE_SIGN

CORRUPT = "_corrupt_record"
LINEAGE_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")
# Raw layer: the event fields (timestamp parsed to a UTC timestamp), lineage, and the partition.
RAW_COLUMNS = (*ORDER_FIELD_NAMES, *LINEAGE_COLUMNS, "date")
# What only a quarantined record fills: its untouched Kafka value and key, and why.
REJECTED_COLUMNS = ("value", "reason", "kafka_key")
QUARANTINE_COLUMNS = (*REJECTED_COLUMNS, *LINEAGE_COLUMNS, "date")
# The raw sink holds both kinds of row: each kind's own columns are null in the other's rows.
SINK_COLUMNS = (*ORDER_FIELD_NAMES, *REJECTED_COLUMNS, *LINEAGE_COLUMNS, VERDICT, "date")


# Prices are read with 6 more decimals than the money scale (same integer digits), so that a price
# finer than the cent is seen and quarantined instead of being rounded into the raw layer.
WIRE_PRICE = DecimalType(MONEY_PRECISION + 6, MONEY_SCALE + 6)
MONEY = DecimalType(MONEY_PRECISION, MONEY_SCALE)


def wire_schema() -> StructType:
    """The contract's Spark schema as records are parsed: prices with extra decimals."""
    return StructType(
        [StructField(f.name, WIRE_PRICE, True) if f.name == "unit_price" else f for f in order_spark_schema()]
    )


def _json_field(name: str) -> Column:
    """The raw JSON text at `$.name` (`$` itself for ""): null if absent or not JSON."""
    return F.get_json_object(F.col("value"), f"$.{name}" if name else "$")


def _too_late(max_days: int) -> Column:
    """The event reached Kafka more than `max_days` after its time (the lateness policy in
    `shopstream.config`). Judged by the record's Kafka timestamp, not the clock of the Spark job,
    so a replay after a crash decides the same."""
    return F.col("event_time") < F.col("kafka_timestamp") - F.make_dt_interval(F.lit(max_days))


def _rejection_reason(max_lateness_days: int) -> Column:
    """The first rule a record breaks, or null. CASE WHEN evaluates lazily, so the costlier
    diagnostics (get_json_object) run only for records that already failed the cheap parse."""
    e = F.col("event")
    wrong_type = F.coalesce(
        *(
            F.when(_json_field(n).isNotNull() & e[n].isNull(), F.lit(f"{n} has the wrong type"))
            for n in ORDER_FIELD_NAMES
        ),
        F.lit("not a JSON object of the order schema"),
    )
    missing = F.coalesce(*(F.when(e[n].isNull(), F.lit(f"missing {n}")) for n in ORDER_FIELD_NAMES))
    return (
        F.when(F.col("value").isNull(), F.lit("empty message"))
        .when(e.isNull(), F.lit("invalid JSON"))
        .when(
            e[CORRUPT].isNotNull(),
            F.when(_json_field("").isNull(), F.lit("invalid JSON")).otherwise(wrong_type),
        )
        .when(missing.isNotNull(), missing)
        .when(
            F.greatest(*(F.length(F.trim(e[n])) == 0 for n in REQUIRED_IDS)),
            F.lit("empty id"),
        )
        .when(
            ~e["order_status"].isin(*ORDER_STATUSES),
            F.concat(F.lit("unknown order_status "), e["order_status"]),
        )
        .when(e["quantity"] <= 0, F.concat(F.lit("quantity not positive: "), e["quantity"].cast("string")))
        .when(
            e["unit_price"] <= 0,
            F.concat(F.lit("unit_price not positive: "), e["unit_price"].cast(MONEY).cast("string")),
        )
        .when(
            e["unit_price"] != F.round(e["unit_price"], MONEY_SCALE),
            F.concat(F.lit(f"unit_price has more than {MONEY_SCALE} decimals: "), _json_field("unit_price")),
        )
        .when(F.col("event_time").isNull(), F.concat(F.lit("bad timestamp: "), e["timestamp"]))
        .when(
            F.col("event_time") > F.col("kafka_timestamp") + F.make_dt_interval(F.lit(MAX_AHEAD_DAYS)),
            F.concat(
                F.lit(f"too early: more than {MAX_AHEAD_DAYS} day ahead of its arrival, at "),
                F.col("kafka_timestamp").cast("string"),
            ),
        )
        .when(
            _too_late(max_lateness_days),
            F.concat(
                F.lit(f"too late: more than {max_lateness_days} days after its time, at "),
                F.col("kafka_timestamp").cast("string"),
            ),
        )
    )


def kafka_columns(kafka_records: DataFrame) -> DataFrame:
    """Kafka source rows -> the record's key and value as text plus its lineage columns."""
    return kafka_records.select(
        F.col("key").cast("string").alias("kafka_key"),
        F.col("value").cast("string").alias("value"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
    )


def with_parsed_value(records: DataFrame, schema: StructType) -> DataFrame:
    """Adds `event`, the JSON `value` parsed once with `schema` plus a `_corrupt_record` field.

    Parsed inside a generator (explode of a one-element array): as a plain column, the optimizer
    pushes the validity filter below it and inlines from_json into every one of the ~30 field
    references of the rules, measured 7x slower (40 s vs 5.5 s per 1M records)."""
    with_corrupt = StructType([*schema.fields, StructField(CORRUPT, StringType(), True)])
    event = F.from_json("value", with_corrupt, {"mode": "PERMISSIVE"})
    return records.select("*", F.explode(F.array(event)).alias("event"))


def parse_orders(kafka_records: DataFrame, max_lateness_days: int | None = None) -> DataFrame:
    """Kafka source rows (key, value, topic, partition, offset, timestamp) -> one row per record
    with the parsed event, its lineage, a `date` partition and a `reason` (null when valid).
    `max_lateness_days`: default the lateness policy's (`shopstream.config.lateness_days`)."""
    lateness = lateness_days() if max_lateness_days is None else max_lateness_days
    parsed = with_parsed_value(kafka_columns(kafka_records), wire_schema())
    parsed = parsed.withColumn("event_time", F.try_to_timestamp(F.col("event")["timestamp"]))
    parsed = parsed.withColumn("reason", _rejection_reason(lateness))
    # Quarantined records may have no usable event time: file them by their arrival date.
    return parsed.withColumn("date", F.to_date(F.coalesce("event_time", "kafka_timestamp")))


def _event_field(name: str) -> Column:
    """A raw-layer event column: the parsed field (the timestamp as a timestamp, the price as
    money), unnamed."""
    if name == "timestamp":
        return F.col("event_time")
    return F.col("event")[name].cast(MONEY) if name == "unit_price" else F.col("event")[name]


def sink_rows(parsed: DataFrame) -> DataFrame:
    """Every parsed record as one row of the raw sink (SINK_COLUMNS): the event's fields when
    valid, else its untouched value and reason; `verdict` says which. One frame, so that one query
    reads and parses each record once and one commit log covers both kinds."""
    valid = F.col("reason").isNull()
    columns = {n: F.when(valid, _event_field(n)) for n in ORDER_FIELD_NAMES}
    columns |= {"value": F.when(~valid, F.col("value")), "reason": F.col("reason"),
                "kafka_key": F.when(~valid, F.col("kafka_key"))}  # fmt: skip
    columns[VERDICT] = F.when(valid, F.lit(VALID)).otherwise(F.lit(QUARANTINED))
    return parsed.select(*(columns[n].alias(n) if n in columns else F.col(n) for n in SINK_COLUMNS))


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


def quarantine_rows(sink: DataFrame) -> DataFrame:
    return sink.where(F.col(VERDICT) == QUARANTINED).select(*QUARANTINE_COLUMNS)
