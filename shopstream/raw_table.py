"""The raw layer as the Iceberg table `lake.<namespace>.raw_events`, read without a JVM
(PyIceberg): what a run pins, what changed since a date's publication, and the rows of a date.

The ingest (`shopstream.spark.stream_consumer`) writes every record of the topic to it once,
through Iceberg's streaming sink: valid rows (`verdict=valid`) and quarantined records with their
untouched bytes and reason (`verdict=quarantined`), partitioned by `verdict` and `date`. Each of its
commits is a snapshot; a run pins the table's current snapshot so that both batch jobs and the
validation read the same rows however many commits follow (`spark.read.option("versionAsOf",
snapshot)`, or `rows(..., snapshot=)` here).

A date's fingerprint is its valid partition's record count and the newest data sequence number of
its files (Iceberg's own metadata: the manifests' entries): late events or re-deliveries change
it, so does a compaction of the date (a harmless recompute: maintenance compacts only dates past
the lateness window), the expiry of old snapshots does not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from shopstream.config import QUARANTINED, VALID, VERDICT
from shopstream.lake import open_catalog, table_id

RAW_EVENTS = "raw_events"
DELETED = 2  # a manifest entry's status: its file left the table
# Table properties the ingest sets (what every row of the table is, since its first commit).
DEDUPLICATED = "shopstream.deduplicated-window-days"  # re-deliveries dropped within this window
VALIDATED = "shopstream.validated"  # every valid row passed the contract's rules
# The live ingest commits a snapshot a minute, and each commit rewrites the table's metadata file,
# which lists every kept snapshot. A run needs its pinned snapshot for hours, never for days (a
# date's fingerprint reads the files' sequence numbers, not old snapshots): maintenance expires
# the raw table's snapshots after a day, where the other tables keep theirs for the retention.
SNAPSHOT_RETENTION = dt.timedelta(days=1)
# Each commit's metadata file replaces the one before: keep the last 100, not a file a minute.
TABLE_PROPERTIES = {
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
}


@dataclass(frozen=True)
class DateInput:
    """A date's valid raw rows as a run pins them: at `snapshot` of the table, `rows` of them."""

    snapshot: int | None  # None: the table has no commit yet
    rows: int
    fingerprint: str

    def as_dict(self) -> dict:
        return asdict(self)


def load(catalog=None):
    """The raw table, or None where the ingest has not made it yet."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return (catalog or open_catalog()).load_table(table_id(RAW_EVENTS))
    except NoSuchTableError:
        return None


def current_snapshot(table) -> int | None:
    snapshot = table.current_snapshot() if table is not None else None
    return snapshot.snapshot_id if snapshot is not None else None


def partition_stats(table, verdict: str = VALID, snapshot: int | None = None) -> dict[str, tuple[int, int]]:
    """Date -> (record count, newest data sequence number of its files) of one verdict's
    partitions at `snapshot` (default the current one), from the manifests' entries. Sequence
    numbers, unlike snapshot ids, survive the expiry of the snapshots that wrote the files."""
    if table is None or (snapshot is None and current_snapshot(table) is None):
        return {}
    stats: dict[str, tuple[int, int]] = {}
    for entry in table.inspect.entries(snapshot_id=snapshot).to_pylist():
        partition = entry["data_file"]["partition"]
        if entry["status"] == DELETED or partition[VERDICT] != verdict or entry["data_file"]["content"] != 0:
            continue
        date = partition["date"].isoformat()
        rows, newest = stats.get(date, (0, 0))
        stats[date] = (rows + entry["data_file"]["record_count"], max(newest, entry["sequence_number"]))
    return {date: stat for date, stat in stats.items() if stat[0]}


def date_rows(table, date: str, verdict: str = VALID) -> int:
    """How many rows of `verdict` the table holds of `date` now, from the metadata of the date's
    files only (Iceberg's planning skips other dates' manifests: a sensor's poke of a year-old
    table reads a few of them, not every entry as `partition_stats` does)."""
    from pyiceberg.expressions import And, EqualTo

    if table is None:
        return 0
    where = And(EqualTo(VERDICT, verdict), EqualTo("date", date))  # no snapshot yet: no files planned
    return sum(task.file.record_count for task in table.scan(row_filter=where).plan_files())


def date_inputs(dates: list[str], catalog=None) -> dict[str, DateInput]:
    """Each date's valid raw rows as the table holds them now (one snapshot for all of them)."""
    table = load(catalog)
    snapshot = current_snapshot(table)
    stats = partition_stats(table, VALID, snapshot)
    result = {}
    for date in dates:
        rows, sequence = stats.get(date, (0, 0))
        result[date] = DateInput(snapshot, rows, f"{sequence}:{rows}" if rows else "")
    return result


def committed_dates(verdict: str = VALID, catalog=None) -> list[str]:
    """The dates with rows of `verdict` in the table now, oldest first."""
    return sorted(partition_stats(load(catalog), verdict))


def rows(date: dt.date | str, verdict: str = VALID, snapshot: int | None = None,
         columns: tuple[str, ...] = ("*",), catalog=None):  # fmt: skip
    """One date's rows of `verdict` (at `snapshot`, default the current one) as an Arrow table;
    None when the table does not exist."""
    from pyiceberg.expressions import And, EqualTo

    table = load(catalog)
    if table is None:
        return None
    where = And(EqualTo(VERDICT, verdict), EqualTo("date", str(date)))
    return table.scan(row_filter=where, selected_fields=columns, snapshot_id=snapshot).to_arrow()


def quarantined(date: dt.date | str, catalog=None):
    """The date's quarantined records (Arrow), or None without a table."""
    return rows(date, QUARANTINED, catalog=catalog)


def writer_properties(catalog=None) -> dict[str, str]:
    table = load(catalog)
    return dict(table.properties) if table is not None else {}
