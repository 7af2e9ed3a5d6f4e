"""The DataFrame job's daily outputs as Apache Iceberg tables, and their write-audit-publish.

Each output is a table of the catalog (`shopstream.lake`), partitioned by `date`;
`sales_by_product` also by Iceberg's `bucket(4, product_id)`. A run writes its dates into a
branch of its own (`branch_for(version)`), which readers of the tables never see: plain queries
read the branch `main`. `validate_output` reads the branch (`read_output`), and each date that
passes is published onto `main` (`publish_date`): in one commit per table, the date's files on
`main` are swapped for the branch's, the very files the validation read (no data is rewritten).
A date whose validation fails leaves `main` as it was.

Spark's `fast_forward` publishes a whole branch, and `cherrypick_snapshot` is Java-only; the swap
is PyIceberg's own overwrite commit, so the validation task needs no JVM and one failing date
never holds back the others. Each commit checks that `main` did not move meanwhile (Iceberg's
optimistic concurrency) and notes the run and date in the snapshot's summary.
"""

from __future__ import annotations

import datetime as dt
import re

from shopstream.lake import open_catalog, table_id

OUTPUTS = ("hourly_sales", "top_products", "regional_revenue", "status_by_category", "sales_by_product")
BUCKETED_OUTPUT, BUCKET_COLUMN, BUCKETS = "sales_by_product", "product_id", 4
MAIN = "main"
RUN_PROPERTY, DATE_PROPERTY = "shopstream.run", "shopstream.date"


class BranchMissing(LookupError):
    """The run wrote no branch for an output: its DataFrame job did not run, or wrote no rows."""


def branch_for(version: str) -> str:
    """The branch a run's version writes to: `run_` and the version, letters, digits and `_` only."""
    return "run_" + re.sub(r"[^A-Za-z0-9_]+", "_", version)


def load(output: str, catalog=None):
    """The output's table through PyIceberg."""
    return (catalog or open_catalog()).load_table(table_id(output))


def snapshot_of(table, ref: str | int | None) -> int | None:
    """A snapshot id: `ref` itself if an int, a branch or tag's head, or `main`'s (None: no snapshot)."""
    if isinstance(ref, int):
        return ref
    if ref in (None, MAIN):
        current = table.current_snapshot()
        return current.snapshot_id if current else None
    head = table.snapshot_by_name(ref)
    if head is None:
        raise BranchMissing(f"{table.name()} has no branch {ref}")
    return head.snapshot_id


def _date_filter(date: dt.date | str):
    from pyiceberg.expressions import EqualTo

    return EqualTo("date", dt.date.fromisoformat(str(date)))


def read_output(output: str, date: dt.date | str, ref: str | int | None = None, catalog=None):
    """The output's rows of `date` (a pyarrow Table) at `ref`: a snapshot id, a branch, or `main`."""
    table = load(output, catalog)
    snapshot = snapshot_of(table, ref)
    if snapshot is None:
        return table.schema().as_arrow().empty_table()
    return table.scan(row_filter=_date_filter(date), snapshot_id=snapshot).to_arrow()


def _date_files(table, date: dt.date | str, snapshot: int | None) -> list:
    """The data files of `date` at `snapshot` (identity-partitioned by date: whole files)."""
    if snapshot is None:
        return []
    scan = table.scan(row_filter=_date_filter(date), snapshot_id=snapshot)
    return [task.file for task in scan.plan_files()]


def publish_output(output: str, date: dt.date | str, version: str, catalog=None) -> int:
    """Makes the run's files of `date` in `output` what `main` holds for the date, in one commit;
    returns `main`'s snapshot id after it. Publishing the same run's date again commits nothing.
    Another run's commit in between (the backfill DAG publishing another date) makes PyIceberg
    apply the swap again on the new `main` (its commit retries, `commit.retry.num-retries`)."""
    table = load(output, catalog)
    staged = _date_files(table, date, snapshot_of(table, branch_for(version)))
    current = _date_files(table, date, snapshot_of(table, MAIN))
    if {f.file_path for f in staged} != {f.file_path for f in current}:
        summary = {RUN_PROPERTY: version, DATE_PROPERTY: str(date)}
        with (
            table.transaction() as transaction,
            transaction.update_snapshot(snapshot_properties=summary).overwrite() as swap,
        ):
            for data_file in current:
                swap.delete_data_file(data_file)
            for data_file in staged:
                swap.append_data_file(data_file)
    return snapshot_of(table, MAIN)  # the commit updated `table`'s metadata in place


def publish_date(date: dt.date | str, version: str, catalog=None) -> dict[str, int]:
    """Publishes every output of `date` from the run's branch; returns each output's `main`
    snapshot id after it. One commit per table: a crash midway leaves some outputs published and
    the date without a publication record, so the next run transforms and publishes it again."""
    catalog = catalog or open_catalog()
    return {output: publish_output(output, date, version, catalog) for output in OUTPUTS}


def remove_branches(version: str, catalog=None) -> None:
    """Drops the run's branch from every output that has one (its snapshots go at the next
    snapshot expiry)."""
    catalog = catalog or open_catalog()
    branch = branch_for(version)
    for output in OUTPUTS:
        if not catalog.table_exists(table_id(output)):
            continue
        table = load(output, catalog)
        if table.snapshot_by_name(branch) is not None:
            table.manage_snapshots().remove_branch(branch).commit()
