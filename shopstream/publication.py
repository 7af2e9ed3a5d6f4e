"""Runs, their versions and their publication, one date at a time.

A run (a DAG run, or one manual use of the jobs) has a version: the DataFrame job writes its dates
into the version's branch of the daily tables (`shopstream.daily_tables`), the RDD job its text
output into a folder of the version, and the raw table's snapshot each date was computed from is
pinned in the version, so that both jobs and the validation read the same rows while ingest goes
on:

    <transformed>/_versions/<version>/rdd_revenue_by_product/date=<D>/   the RDD job's text
    <transformed>/_versions/<version>/_inputs.json                       the pinned raw snapshots

Only once validation has passed is a date published (`publish`): its outputs on the tables'
`main` branch are swapped for the run's, and a row of the catalog's `publications` table records
the date, the version, each output's snapshot and the validation; failed validations are recorded
too. A date counts as published by its newest passing row. `vacuum` deletes the folders and
branches of versions past the retention that readers no longer see.

    python -m shopstream.publication history --date 2026-11-25
    python -m shopstream.publication vacuum --retain-days 7
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from shopstream import daily_tables, raw_table
from shopstream.config import lateness_days, paths
from shopstream.files import write_json_atomically
from shopstream.lake import namespace, open_catalog, table_id

VERSIONS, INPUTS = "_versions", "_inputs.json"
DEFAULT_RETENTION = dt.timedelta(days=7)


def transformed_root(root: Path | None = None) -> Path:
    return (root or paths().transformed).resolve()


def new_version(label: str | None = None) -> str:
    """A new version name, never used before (a published version is never written again):
    creation time, a random part, and `label` (e.g. the Airflow run id) as a folder-safe prefix."""
    unique = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
    return f"{re.sub(r'[^A-Za-z0-9_.=-]+', '_', label)}-{unique}" if label else unique


def version_root(root: Path, version: str) -> Path:
    return root / VERSIONS / version


def output_dir(root: Path, version: str, output: str, date: str) -> Path:
    return version_root(root, version) / output / f"date={date}"


# --- what a version was computed from -------------------------------------------------------


def write_inputs(root: Path, version: str, inputs: dict[str, dict]) -> Path:
    target = version_root(root, version) / INPUTS
    write_json_atomically(target, inputs)
    return target


def read_inputs(root: Path, version: str) -> dict[str, dict]:
    target = version_root(root, version) / INPUTS
    return json.loads(target.read_text()) if target.exists() else {}


# --- publication -----------------------------------------------------------------------------

PUBLICATIONS = "publications"  # the catalog's table of every validation and publication


@dataclass(frozen=True)
class Publication:
    """One validation of a run's outputs of a date, and its publication if it passed: the
    snapshot of `main` each output had right after (read them `VERSION AS OF` that id to see all
    outputs of the date from one run, even after later publications)."""

    date: dt.date
    version: str  # the run's version: its label (the Airflow run id) and creation time
    recorded_at: dt.datetime
    passed: bool
    checks: int
    checks_passed: int
    failed_checks: str
    raw_fingerprint: str
    snapshots: dict[str, int]  # output -> main's snapshot id after publication; empty if failed


def _arrow_schema():
    import pyarrow as pa

    return pa.schema([
        ("date", pa.date32()), ("version", pa.string()), ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("passed", pa.bool_()), ("checks", pa.int32()), ("checks_passed", pa.int32()),
        ("failed_checks", pa.string()), ("raw_fingerprint", pa.string()),
        *((f"{output}_snapshot", pa.int64()) for output in daily_tables.OUTPUTS),
    ])  # fmt: skip


def publications_table(catalog=None):
    """The publications table (made on first use), through PyIceberg."""
    catalog = catalog or open_catalog()
    catalog.create_namespace_if_not_exists(namespace())
    return catalog.create_table_if_not_exists(table_id(PUBLICATIONS), schema=_arrow_schema())


def record(publication: Publication, catalog=None) -> Publication:
    """Appends `publication` to the publications table (one commit)."""
    import pyarrow as pa

    row = {
        **{k: v for k, v in asdict(publication).items() if k != "snapshots"},
        **{f"{o}_snapshot": publication.snapshots.get(o) for o in daily_tables.OUTPUTS},
    }
    publications_table(catalog).append(pa.Table.from_pylist([row], schema=_arrow_schema()))
    return publication


def history(date: dt.date | str | None = None, catalog=None) -> list[Publication]:
    """Every recorded validation of `date` (None: of every date), newest first."""
    from pyiceberg.expressions import AlwaysTrue, EqualTo

    where = EqualTo("date", dt.date.fromisoformat(str(date))) if date else AlwaysTrue()
    rows = publications_table(catalog).scan(row_filter=where).to_arrow().to_pylist()
    snapshot_columns = {f"{o}_snapshot": o for o in daily_tables.OUTPUTS}
    found = [
        Publication(
            **{k: v for k, v in row.items() if k not in snapshot_columns},
            snapshots={o: row[c] for c, o in snapshot_columns.items() if row[c] is not None},
        )
        for row in rows
    ]
    return sorted(found, key=lambda p: p.recorded_at, reverse=True)


def latest_by_date(entries: list[Publication]) -> dict[str, Publication]:
    """Of `entries` (newest first, as `history` gives them), each date's newest one. Keyed by ISO
    date."""
    latest: dict[str, Publication] = {}
    for entry in entries:
        latest.setdefault(entry.date.isoformat(), entry)
    return latest


def published_by_date(entries: list[Publication]) -> dict[str, Publication]:
    """Of `entries` (newest first), each date's newest publication that passed: what readers of the
    date see. Keyed by ISO date."""
    return latest_by_date([entry for entry in entries if entry.passed])


def published(date: dt.date | str, catalog=None) -> Publication | None:
    """The publication readers of `date` see (its newest that passed), or None."""
    return published_by_date(history(date, catalog)).get(str(date))


def published_version(date: dt.date | str, catalog=None) -> str | None:
    found = published(date, catalog)
    return found.version if found else None


def published_dates(catalog=None) -> list[str]:
    """Every date with a publication, oldest first."""
    return sorted(published_by_date(history(None, catalog)))


def publish(date: str, version: str, fingerprint: str, checks: int, catalog=None) -> Publication:
    """Publishes the run's outputs of `date` (`daily_tables.publish_date`), then records it: only
    a recorded publication counts as done (a crash before leaves the date to the next run)."""
    catalog = catalog or open_catalog()
    snapshots = daily_tables.publish_date(date, version, catalog)
    return record(Publication(dt.date.fromisoformat(date), version, dt.datetime.now(dt.UTC), True,
                              checks, checks, "", fingerprint, snapshots), catalog)  # fmt: skip


def record_failure(date: str, version: str, fingerprint: str, checks: int, failed: list[str],
                   catalog=None) -> Publication:  # fmt: skip
    """Records a validation that failed: nothing published, the run and its failed checks kept."""
    return record(Publication(dt.date.fromisoformat(date), version, dt.datetime.now(dt.UTC), False, checks,
                              checks - len(failed), ", ".join(failed), fingerprint, {}), catalog)  # fmt: skip


# --- what to transform -----------------------------------------------------------------------


def published_fingerprints(catalog=None) -> dict[str, str]:
    """Date -> the fingerprint of the raw inputs its published version was computed from."""
    return {date: p.raw_fingerprint for date, p in published_by_date(history(None, catalog)).items()}


def plan_run(root: Path, run_date: str, version: str, lookback: int | None = None) -> dict:
    """What a run transforms: its date if the raw layer has rows of it, and every date of the
    lookback window that changed since its publication (late events, re-deliveries). Pins their
    inputs in `version` and returns {"version", "dates", "late_dates", "raw_rows"}."""
    window = lookback_dates(run_date, lateness_days() if lookback is None else lookback)
    fresh = published_fingerprints()
    # The run date is transformed even when unchanged (asked for: a re-run); the others if changed.
    todo = {
        d: i.as_dict() for d, i in raw_table.date_inputs(window).items()
        if i.rows and (d == run_date or fresh.get(d) != i.fingerprint)
    }  # fmt: skip
    write_inputs(root, version, todo)
    return {
        "version": version,
        "dates": sorted(todo),
        "late_dates": sorted(d for d in todo if d != run_date),
        "raw_rows": {d: i["rows"] for d, i in sorted(todo.items())},
    }


def lookback_dates(run_date: str, days: int) -> list[str]:
    """`run_date` and the `days` dates before it, oldest first."""
    last = dt.date.fromisoformat(run_date)
    return [(last - dt.timedelta(days=n)).isoformat() for n in range(days, -1, -1)]


# --- retention -------------------------------------------------------------------------------


_CREATED = re.compile(r"(\d{8}T\d{12}Z)-[0-9a-f]{8}$")


def _version_time(root: Path, version: str) -> dt.datetime:
    """When the version was created: `new_version` put the time in its name (a retried task that
    writes into the version later must not make it look young). Else the folder's mtime."""
    if created := _CREATED.search(version):
        return dt.datetime.strptime(created.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(version_root(root, version).stat().st_mtime, dt.UTC)


def vacuum(
    root: Path, retain: dt.timedelta = DEFAULT_RETENTION, now: dt.datetime | None = None
) -> list[Path]:
    """Deletes the date folders of versions older than `retain` that readers no longer see (not
    the published version of their date), then versions left empty, and their tables' branches.
    Returns the folders it deleted."""
    now = now or dt.datetime.now(dt.UTC)
    folder = root / VERSIONS
    versions = sorted(folder.iterdir()) if folder.is_dir() else []
    old = [v for v in versions if now - _version_time(root, v.name) >= retain]
    if not old:
        return []
    catalog = open_catalog()
    current = {date: p.version for date, p in published_by_date(history(None, catalog)).items()}
    deleted: list[Path] = []
    for version_dir in old:
        for date_dir in version_dir.glob("*/date=*"):
            if current.get(date_dir.name.removeprefix("date=")) != version_dir.name:
                shutil.rmtree(date_dir)
                deleted.append(date_dir)
        if not any(version_dir.glob("*/date=*")):
            daily_tables.remove_branches(version_dir.name, catalog)
            shutil.rmtree(version_dir)
            deleted.append(version_dir)
    return deleted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    history = commands.add_parser("history", help="the published versions of a date, newest first")
    history.add_argument("--date", required=True)
    clean = commands.add_parser("vacuum", help="delete unpublished versions older than the retention")
    clean.add_argument("--retain-days", type=float, default=DEFAULT_RETENTION.days)
    args = parser.parse_args(argv)
    root = transformed_root()
    if args.command == "history":
        entries = history(args.date)
        if not entries:
            print(f"{args.date} was never validated (catalog table {table_id(PUBLICATIONS)})")
            return 1
        current = published(args.date)
        for entry in entries:
            state = "current" if entry == current else ("published" if entry.passed else "FAILED")
            snapshots = " ".join(f"{o}@{s}" for o, s in entry.snapshots.items()) or entry.failed_checks
            print(f"{entry.recorded_at:%Y-%m-%d %H:%M:%S}  {entry.version:<48} {state:<9} {snapshots}")
        return 0
    for path in vacuum(root, dt.timedelta(days=args.retain_days)):
        print(f"deleted {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
