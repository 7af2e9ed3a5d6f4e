"""Versioned, validated, atomic publication of the transformed layer, one date at a time.

Layout under the transformed root (`data/transformed/`):

    _versions/<version>/<output>/date=<D>/...   what one run wrote (Parquet, or the RDD job's text)
    _versions/<version>/_inputs.json            the raw files each date of that run was computed from
    _published/<D>.json                         which version of D readers see, and its history

A run (a DAG run, or one manual use of the jobs) writes every output of its dates into a version
folder of its own, so a crash mid-write never touches what readers see. Only once validation has
passed are a date's outputs published: `_published/<D>.json` is replaced in one atomic rename, so
readers see all outputs of the date from one run, or all from the run before. Earlier versions
stay readable (an audit reads them by version: `history`) until `vacuum` deletes those past the
retention. Plain file I/O: local or mounted storage (HDFS/S3 would need the Hadoop FileSystem API).

    python -m shopstream.publication history --date 2026-11-25
    python -m shopstream.publication vacuum --retain-days 7

`vacuum` also deletes the raw files that compactions of closed dates replaced
(`shopstream.spark.raw_compaction`) once no kept version pins them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
import shutil
import sys
import uuid
from pathlib import Path

from shopstream.config import VALID, lateness_days, paths
from shopstream.files import write_json_atomically
from shopstream.sink_log import REPLACED_GRACE, committed_files_by_date, delete_replaced, original_files

VERSIONS, PUBLISHED, INPUTS = "_versions", "_published", "_inputs.json"
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


def raw_inputs(raw: Path, dates: list[str]) -> dict[str, dict]:
    """The committed valid raw files of each date now, with a fingerprint of the list: the input
    of a run, pinned so that the jobs and the validation all read the same rows even while
    ingest goes on, and compared later to tell whether a date has changed since."""
    by_date = committed_files_by_date(raw, VALID, dates)  # the commit log read once for every date
    result = {}
    for date in dates:
        files = by_date.get(date, [])
        # Over the files as the sink committed them: a compaction rewrites files, not the date.
        digest = hashlib.sha256("\n".join(original_files(raw, files)).encode()).hexdigest()[:16]
        result[date] = {"files": files, "fingerprint": digest}
    return result


def write_inputs(root: Path, version: str, inputs: dict[str, dict]) -> Path:
    target = version_root(root, version) / INPUTS
    write_json_atomically(target, inputs)
    return target


def pinned_files(root: Path) -> list[list[str]]:
    """The raw files every kept version pinned, one list per version and date."""
    pins = (root / VERSIONS).glob(f"*/{INPUTS}") if (root / VERSIONS).is_dir() else []
    return [inputs["files"] for pin in pins for inputs in json.loads(pin.read_text()).values()]


def read_inputs(root: Path, version: str) -> dict[str, dict]:
    target = version_root(root, version) / INPUTS
    return json.loads(target.read_text()) if target.exists() else {}


# --- publication -----------------------------------------------------------------------------


def _pointer(root: Path, date: str) -> Path:
    return root / PUBLISHED / f"{date}.json"


def published(root: Path, date: str) -> dict | None:
    """The publication record of `date` (version, inputs' fingerprint, time, history), or None."""
    pointer = _pointer(root, date)
    return json.loads(pointer.read_text()) if pointer.exists() else None


def published_version(root: Path, date: str) -> str | None:
    record = published(root, date)
    return record["version"] if record else None


def published_dir(root: Path, output: str, date: str) -> Path | None:
    """The folder readers of `output` for `date` read, or None if the date was never published."""
    version = published_version(root, date)
    return output_dir(root, version, output, date) if version else None


def published_dates(root: Path) -> list[str]:
    folder = root / PUBLISHED
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def publish(root: Path, date: str, version: str, fingerprint: str, checks: int) -> dict:
    """Makes `version` the one readers see for `date`, in one atomic rename. The record keeps the
    versions published before (newest first), for audits and `vacuum`."""
    before = published(root, date)
    history = []
    if before:
        history = [{k: v for k, v in before.items() if k != "history"}, *before.get("history", [])]
    record = {
        "date": date,
        "version": version,
        "raw_fingerprint": fingerprint,
        "checks_passed": checks,
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "history": history,
    }
    write_json_atomically(_pointer(root, date), record)
    return record


# --- what to transform -----------------------------------------------------------------------


def changed_dates(raw: Path, root: Path, candidates: list[str]) -> dict[str, dict]:
    """Of `candidates`, the dates whose committed raw files differ from those their published
    version was computed from (new or late events, re-deliveries), or that were never published
    and have raw rows; with their current inputs (see `raw_inputs`)."""
    return {d: i for d, i in raw_inputs(raw, candidates).items() if i["files"] and not _fresh(root, d, i)}


def _fresh(root: Path, date: str, inputs: dict) -> bool:
    """Whether `date`'s published version was computed from exactly these inputs."""
    record = published(root, date)
    return record is not None and record["raw_fingerprint"] == inputs["fingerprint"]


def plan_run(raw: Path, root: Path, run_date: str, version: str, lookback: int | None = None) -> dict:
    """What a run transforms: its date if the raw layer has rows of it, and every date of the
    lookback window that changed since its publication (late events, re-deliveries). Pins their
    inputs in `version` and returns {"version", "dates", "late_dates", "raw_rows"}."""
    window = lookback_dates(run_date, lateness_days() if lookback is None else lookback)
    # The run date is transformed even when unchanged (asked for: a re-run); the others if changed.
    todo = {
        d: i for d, i in raw_inputs(raw, window).items()
        if i["files"] and (d == run_date or not _fresh(root, d, i))
    }  # fmt: skip
    write_inputs(root, version, todo)
    return {
        "version": version,
        "dates": sorted(todo),
        "late_dates": sorted(d for d in todo if d != run_date),
        "raw_rows": {d: parquet_rows(i["files"]) for d, i in sorted(todo.items())},
    }


def parquet_rows(files: list[str]) -> int:
    """Rows in Parquet files, from their footers (no data read)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


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
    the published version of their date), then versions left empty. Returns what it deleted."""
    now = now or dt.datetime.now(dt.UTC)
    folder = root / VERSIONS
    deleted: list[Path] = []
    for version_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
        if now - _version_time(root, version_dir.name) < retain:
            continue
        for date_dir in version_dir.glob("*/date=*"):
            if published_version(root, date_dir.name.removeprefix("date=")) != version_dir.name:
                shutil.rmtree(date_dir)
                deleted.append(date_dir)
        if not any(version_dir.glob("*/date=*")):
            shutil.rmtree(version_dir)
            deleted.append(version_dir)
    return deleted


def vacuum_raw(raw: Path, root: Path, now: dt.datetime | None = None) -> list[str]:
    """Deletes the raw files compactions replaced that no kept version of `root` pins any more
    (`sink_log.delete_replaced`); run after `vacuum`, which drops versions and so their pins."""
    return delete_replaced(raw, pinned_files(root), REPLACED_GRACE, now)


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
        record = published(root, args.date)
        if record is None:
            print(f"{args.date} was never published in {root}")
            return 1
        for entry in [record, *record["history"]]:
            where = version_root(root, entry["version"])
            state = "current" if entry is record else ("kept" if where.exists() else "vacuumed")
            print(f"{entry['published_at']}  {entry['version']:<48} {state:<9} {where}")
        return 0
    for path in vacuum(root, dt.timedelta(days=args.retain_days)):
        print(f"deleted {path}")
    replaced = vacuum_raw(paths().raw_sink.resolve(), root)
    print(f"deleted {len(replaced)} raw files that compactions replaced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
