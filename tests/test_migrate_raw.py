"""An earlier version's raw layer (the streaming file sink's Parquet, its commit log and markers)
moved into the raw table once: exactly the committed rows (an orphan of a crashed batch stays
out), the markers as the table's properties, and a second run moves nothing."""

from __future__ import annotations

import pytest

from shopstream.raw_table import VALIDATED, writer_properties
from shopstream.spark.migrate_raw import main, migrate
from tests.raw_rows import commits, read_raw

pytestmark = pytest.mark.integration


@pytest.fixture
def old_sink(spark, tmp_path, fresh_lake_namespace):
    """A raw sink as the file sink wrote it: 30 rows over two dates and both verdicts."""
    frame = spark.sql(
        "SELECT concat('ORD-', id) AS order_id, CAST(id AS INT) AS quantity, id AS kafka_offset, "
        "CASE WHEN id % 10 = 0 THEN 'quarantined' ELSE 'valid' END AS verdict, "
        "DATE_ADD(DATE'2026-11-20', CAST(id % 2 AS INT)) AS date FROM range(30)"
    )
    frame.write.parquet(str(tmp_path / "staged"))
    (
        spark.readStream.schema(frame.schema).parquet(str(tmp_path / "staged"))
        .writeStream.format("parquet").partitionBy("verdict", "date").trigger(availableNow=True)
        .option("checkpointLocation", str(tmp_path / "cp")).start(str(tmp_path / "raw"))
        .awaitTermination()
    )  # fmt: skip
    sink = tmp_path / "raw"
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


def test_a_folder_that_is_no_old_sink_is_refused(tmp_path, fresh_lake_namespace):
    assert main(["--raw-dir", str(tmp_path)]) == 2
