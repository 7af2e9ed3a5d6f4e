"""The plan of a run and the record of publications (the catalog's `publications` table, in the
session's PostgreSQL), on a raw table that PyIceberg writes (no Spark needed to decide what
changed: the plan reads the table's metadata). Publishing the tables themselves:
tests/test_batch_etl.py, tests/test_dag_e2e.py."""

from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
import pytest

from shopstream import publication, raw_table
from shopstream.config import VALID, VERDICT
from shopstream.lake import namespace, open_catalog, table_id

DAY, LATE_DAY, OLD_DAY = "2026-11-27", "2026-11-25", "2026-11-15"


@pytest.fixture(autouse=True)
def own_catalog_namespace(lake_catalog, fresh_lake_namespace):
    """Each test's publications apart from the others' (they publish the same dates)."""


@pytest.fixture
def raw():
    """An empty raw table: a verdict, a date and an order id, partitioned as the ingest's is."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import DateType, NestedField, StringType

    catalog = open_catalog()
    catalog.create_namespace_if_not_exists(namespace())
    schema = Schema(NestedField(1, "order_id", StringType()), NestedField(2, VERDICT, StringType()),
                    NestedField(3, "date", DateType()))  # fmt: skip
    spec = PartitionSpec(PartitionField(2, 1000, IdentityTransform(), VERDICT),
                         PartitionField(3, 1001, IdentityTransform(), "date"))  # fmt: skip
    return catalog.create_table(table_id(raw_table.RAW_EVENTS), schema, partition_spec=spec)


def commit_batch(raw, batch: int, dates: list[str]) -> None:
    """One ingest commit of two valid rows per date."""
    rows = [{"order_id": f"ORD-{batch}-{n}", VERDICT: VALID, "date": dt.date.fromisoformat(day)}
            for day in dates for n in (1, 2)]  # fmt: skip
    raw.append(pa.Table.from_pylist(rows, schema=raw.schema().as_arrow()))


def publish_plan(root, plan: dict) -> None:
    """The record validate_output makes once every check passed (the tables' part aside)."""
    pinned = publication.read_inputs(root, plan["version"])
    for day in plan["dates"]:
        publication.record(publication.Publication(
            dt.date.fromisoformat(day), plan["version"], dt.datetime.now(dt.UTC), True, 1, 1, "",
            pinned[day]["fingerprint"], {},
        ))  # fmt: skip


def test_a_run_plans_its_date_then_only_dates_whose_raw_rows_changed(raw, tmp_path):
    root = tmp_path / "transformed"
    commit_batch(raw, 0, [DAY, LATE_DAY, OLD_DAY])
    first = publication.plan_run(root, DAY, publication.new_version("run1"))
    # Its date and the unpublished dates of the 7-day window; the old day is out of it.
    assert first["dates"] == [LATE_DAY, DAY] and first["late_dates"] == [LATE_DAY]
    assert first["raw_rows"] == {LATE_DAY: 2, DAY: 2}
    publish_plan(root, first)

    # Nothing changed: the next day's run transforms only its own date.
    next_day = "2026-11-28"
    commit_batch(raw, 1, [next_day])
    assert publication.plan_run(root, next_day, publication.new_version("run2"))["dates"] == [next_day]

    # Late rows of a published date: planned again, pinned at the table's snapshot now.
    commit_batch(raw, 2, [LATE_DAY])
    late = publication.plan_run(root, next_day, publication.new_version("run3"))
    assert late["dates"] == [LATE_DAY, next_day] and late["raw_rows"][LATE_DAY] == 4
    pinned = publication.read_inputs(root, late["version"])
    current = raw_table.load().current_snapshot().snapshot_id
    assert {pinned[d]["snapshot"] for d in late["dates"]} == {current}


def test_a_day_without_rows_has_nothing_to_plan(raw, tmp_path):
    plan = publication.plan_run(tmp_path / "transformed", DAY, publication.new_version())
    assert plan["dates"] == [] and plan["late_dates"] == []


def test_publications_are_recorded_newest_first_and_vacuum_keeps_what_readers_see(raw, tmp_path):
    root = tmp_path / "transformed"
    commit_batch(raw, 0, [DAY])
    versions = []
    for n in range(3):
        plan = publication.plan_run(root, DAY, publication.new_version(f"run{n}"))
        out = publication.output_dir(root, plan["version"], "rdd_revenue_by_product", DAY)
        out.mkdir(parents=True)
        (out / "part-00000").write_text(f"version {n}")
        publish_plan(root, plan)
        versions.append(plan["version"])
    failed = publication.record_failure(DAY, publication.new_version("run3"), "f", 9, ["reconciles_with_raw"])
    assert publication.published_version(DAY) == versions[2], "a failed validation publishes nothing"
    assert [p.version for p in publication.history(DAY)] == [failed.version, *reversed(versions)]
    assert publication.published_dates() == [DAY]

    # Within the retention nothing goes; past it, the versions readers no longer see do. A version
    # ages from its creation (in its name), whatever a late write did to its folder's mtime.
    assert publication.vacuum(root, dt.timedelta(days=7)) == []
    eight_days_on = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
    for version in versions:
        later = eight_days_on.timestamp()
        os.utime(publication.version_root(root, version), (later, later))
    deleted = publication.vacuum(root, dt.timedelta(days=7), now=eight_days_on)
    assert {p.name for p in deleted} >= {versions[0], versions[1]}
    kept = publication.output_dir(root, versions[2], "rdd_revenue_by_product", DAY) / "part-00000"
    assert kept.read_text() == "version 2"
    assert sorted(p.name for p in (root / "_versions").iterdir()) == [versions[2]]


def test_new_versions_are_unique_and_folder_safe():
    label = "scheduled__2026-11-28T00:00:00+00:00"
    first, second = publication.new_version(label), publication.new_version(label)
    assert first != second and first.startswith("scheduled__2026-11-28T00_00_00_00_00-")
    assert "/" not in first and ":" not in first and "+" not in first
