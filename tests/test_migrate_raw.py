"""An earlier version's file sinks moved into their tables once: the raw layer (the streaming file
sink's Parquet, its commit log and markers) into the raw table, exactly the committed rows (an orphan
of a crashed batch stays out), the markers as the table's properties, and a second run moves
nothing; the rejected updates' sink into `quarantined_updates`."""

from __future__ import annotations

import pytest

from shopstream.raw_table import VALIDATED, writer_properties
from shopstream.spark.migrate_raw import main, migrate
from shopstream.spark.status_table import QUARANTINE_TABLE
from tests import iceberg_read
from tests.raw_rows import commits, read_raw

pytestmark = pytest.mark.integration


def file_sink(spark, frame, sink, *partition_by: str):
    """`frame` written as an earlier version's streaming file sink did, into `sink`."""
    staged, checkpoint = sink.with_name(f"{sink.name}-staged"), sink.with_name(f"{sink.name}-cp")
    frame.write.parquet(str(staged))
    (
        spark.readStream.schema(frame.schema).parquet(str(staged))
        .writeStream.format("parquet").partitionBy(*partition_by).trigger(availableNow=True)
        .option("checkpointLocation", str(checkpoint)).start(str(sink))
        .awaitTermination()
    )  # fmt: skip
    return sink


@pytest.fixture
def old_sink(spark, tmp_path, fresh_lake_namespace):
    """A raw sink as the file sink wrote it: 30 rows over two dates and both verdicts."""
    frame = spark.sql(
        "SELECT concat('ORD-', id) AS order_id, CAST(id AS INT) AS quantity, id AS kafka_offset, "
        "CASE WHEN id % 10 = 0 THEN 'quarantined' ELSE 'valid' END AS verdict, "
        "DATE_ADD(DATE'2026-11-20', CAST(id % 2 AS INT)) AS date FROM range(30)"
    )
    sink = file_sink(spark, frame, tmp_path / "raw", "verdict", "date")
    orphan = next((sink / "verdict=valid").glob("date=*")) / "part-orphan.parquet"
    frame.limit(3).toPandas().to_parquet(orphan)  # a crashed batch's file: in no commit
    (sink / "_validated.json").write_text('{"required": ["order_id"]}')
    return sink


def test_the_committed_rows_move_once_with_their_markers(spark, old_sink):
    assert migrate(spark, old_sink) == 30

    moved = sorted(read_raw().select("order_id, verdict, CAST(date AS VARCHAR)").fetchall())
    assert len(moved) == 30 and len({order for order, *_ in moved}) == 30, "the orphan stayed out"
    assert sum(verdict == "quarantined" for _, verdict, _ in moved) == 3
    assert VALIDATED in writer_properties()
    before = commits()
    assert migrate(spark, old_sink) == 0
    assert commits() == before, "a second run commits nothing"


def test_the_rejected_updates_move_into_their_table(spark, tmp_path, fresh_lake_namespace):
    frame = spark.sql(
        "SELECT 'invalid JSON' AS reason, CAST(concat('{\"order_id', id) AS BINARY) AS value_bytes, "
        "'order_updates' AS kafka_topic, id AS kafka_offset, DATE'2026-11-20' AS date FROM range(4)"
    )
    sink = file_sink(spark, frame, tmp_path / "quarantine_updates", "date")

    assert main(["--raw-dir", str(tmp_path / "no-raw"), "--quarantine-updates-dir", str(sink)]) == 0
    moved = iceberg_read.rows(QUARANTINE_TABLE, "reason, kafka_offset, CAST(date AS VARCHAR)", "kafka_offset")
    assert moved == [("invalid JSON", n, "2026-11-20") for n in range(4)]


def test_a_folder_that_is_no_old_sink_is_refused(tmp_path, fresh_lake_namespace):
    assert main(["--raw-dir", str(tmp_path), "--quarantine-updates-dir", str(tmp_path)]) == 2
