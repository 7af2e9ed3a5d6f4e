"""Data-quality checks of every transformed output for one date, with a readable report.

    python -m shopstream.validation --date 2026-11-20                  # the published outputs
    python -m shopstream.validation --date 2026-11-20 --version V --publish  # a run's, published

Checks one version of the date's outputs: a run's, on its branch of the daily tables, or (default)
the published ones, on the tables' `main` branch (see `shopstream.publication`).
Reads them through PyIceberg into DuckDB (no JVM needed), so the DAG's `validate_output` task is
quick and independent of the Spark code that wrote them, and reconciles them with the raw layer:
the date's distinct events, orders and net revenue recomputed from the raw files must equal the
outputs', so stale or partial outputs fail with the command that re-runs the date. Exit code 1
and a report naming each failed check.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb
from pyiceberg.exceptions import NoSuchTableError

from shopstream import publication, raw_table
from shopstream.config import VALID, paths
from shopstream.contract import EVENT_IDENTITY, NEW, ORDER_STATUSES
from shopstream.daily_tables import MAIN, BranchMissing, branch_for, read_output
from shopstream.files import text_output_lines, write_json_atomically
from shopstream.lake import table_id
from shopstream.metrics import TOP_N_PRODUCTS

# Output -> (columns that must exist, key columns that must never be null).
EXPECTED_OUTPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "hourly_sales": (
        ("hour", "orders", "gross_revenue", "reversals", "net_revenue", "avg_order_value"),
        ("hour",),
    ),
    "top_products": (
        ("rank", "product_id", "product_name", "net_quantity", "net_revenue"),
        ("rank", "product_id"),
    ),
    "regional_revenue": (
        ("region_code", "region_name", "orders", "net_revenue"),
        ("region_code", "region_name"),
    ),
    "status_by_category": (("category", "NEW", "CANCELLED", "RETURNED"), ("category",)),
    "sales_by_product": (("product_id", "net_quantity", "net_revenue", "orders"), ("product_id",)),
}
RDD_OUTPUT = "rdd_revenue_by_product"


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Report:
    date: str
    version: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def add(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append(Check(name, bool(passed), detail))

    def text(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"validation of {self.date} (version {self.version}): {verdict} "
                 f"({len(self.checks) - len(self.failed)}/{len(self.checks)} checks passed)"]  # fmt: skip
        lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        checks = [asdict(c) for c in self.checks]
        return {"date": self.date, "version": self.version, "passed": self.passed, "checks": checks}


def _rdd_total(folder: Path) -> tuple[int, Decimal]:
    lines = text_output_lines(folder)
    return len(lines), sum((Decimal(line.split("\t")[1]) for line in lines), Decimal(0))


# The raw columns the reconciliation reads: the identity, and what the revenue rule needs.
EVENT_COLUMNS = tuple(dict.fromkeys((*EVENT_IDENTITY, "product_id", "region", "quantity", "unit_price")))


def raw_truth(rows) -> tuple[int, int, Decimal]:
    """(distinct events, orders placed, net revenue) of a date's valid raw rows (Arrow, read from
    the raw table by PyIceberg), each event once by its identity, with the revenue rule spelled
    out in SQL: the validation's own reading, independent of the Spark jobs."""
    if rows is None or rows.num_rows == 0:
        return 0, 0, Decimal(0)
    statuses = ", ".join(f"'{s}'" for s in ORDER_STATUSES)
    identity = ", ".join(f'"{c}"' for c in EVENT_IDENTITY)
    events, orders, net = (
        duckdb.connect()
        .register("raw", rows)
        .execute(
            f"""
        WITH events AS (
            SELECT DISTINCT ON ({identity}) order_status, quantity, unit_price
            FROM raw
            WHERE order_id IS NOT NULL AND product_id IS NOT NULL AND region IS NOT NULL
              AND "timestamp" IS NOT NULL AND order_status IN ({statuses})
              AND quantity > 0 AND unit_price > 0)
        SELECT count(*), count(*) FILTER (WHERE order_status = '{NEW}'),
               coalesce(sum(CASE WHEN order_status = '{NEW}' THEN 1 ELSE -1 END * quantity * unit_price), 0)
        FROM events"""
        )
        .fetchall()[0]
    )
    return events, orders, Decimal(net)


def reconcile_with_raw(report: Report, con, present: set[str], snapshot: int | None, date: str) -> None:
    """The outputs' events, orders and net revenue must be those of the date's valid raw rows: at
    the version's pinned snapshot when checking a run's candidate, the raw table now (None) when
    checking what is published (events of the date that arrived since, or a cut-short write, make
    it stale)."""
    if not {"hourly_sales", "status_by_category"} <= present:
        return
    orders, net = con.execute(
        "SELECT coalesce(sum(orders), 0), coalesce(sum(net_revenue), 0) FROM hourly_sales"
    ).fetchall()[0]
    events = con.execute(
        'SELECT coalesce(sum("NEW" + "CANCELLED" + "RETURNED"), 0) FROM status_by_category'
    ).fetchall()[0][0]
    truth = raw_truth(raw_table.rows(date, VALID, snapshot, EVENT_COLUMNS))
    outputs = (events, orders, Decimal(net))
    detail = (
        f"outputs: {events} events, {orders} orders, net revenue {net}; raw layer: {truth[0]} events, "
        f"{truth[1]} orders, net revenue {truth[2]}"
    )
    if outputs != truth:
        detail += (
            f". The outputs of {date} are stale or partial: transform the date again "
            f"(make backfill FROM={date} TO={date})"
        )
    report.add("reconciles_with_raw", outputs == truth, detail)


def validate(date: str, transformed: Path | None = None, version: str | None = None) -> Report:
    """Checks `version`'s outputs of `date` on its branch (None: the published outputs, on `main`),
    reconciled with the raw rows that version was computed from (its pinned snapshot of the raw
    table; for the published ones: the raw table now)."""
    root = publication.transformed_root(transformed)
    pinned = publication.read_inputs(root, version).get(date) if version else None
    snapshot = pinned["snapshot"] if pinned else None
    current = None if version else publication.published(date)
    version = version or (current.version if current else None)
    report = Report(date, version)
    if version is None:
        report.add("published", False, f"{date} has no publication: run the DAG for it")
        return report
    # A run's candidate on its branch, or the published outputs as readers see them now (`main`:
    # outputs of different runs there, left by a publication cut short, disagree and fail).
    ref = MAIN if current else branch_for(version)
    con = duckdb.connect()
    present: set[str] = set()
    for name, (columns, keys) in EXPECTED_OUTPUTS.items():
        try:
            rows = read_output(name, date, ref)
        except (BranchMissing, NoSuchTableError) as error:
            report.add(f"{name}.exists", False, f"{error}: did the DataFrame job run for {date}?")
            continue
        report.add(f"{name}.exists", True, f"table {table_id(name)}, branch {ref}")
        con.register(name, rows)
        present.add(name)
        missing = [c for c in columns if c not in rows.column_names]
        report.add(
            f"{name}.schema", not missing, f"missing columns {missing}" if missing else "all columns present"
        )
        report.add(f"{name}.row_count", rows.num_rows > 0, f"{rows.num_rows} rows")
        if missing:
            continue
        nulls = con.execute(
            f"SELECT count(*) FROM {name} WHERE " + " OR ".join(f'"{k}" IS NULL' for k in keys)
        ).fetchall()[0][0]
        report.add(f"{name}.no_null_keys", nulls == 0, f"{nulls} rows with a null {'/'.join(keys)}")

    if "hourly_sales" in present:
        negative = con.execute(
            "SELECT count(*) FROM hourly_sales "
            "WHERE gross_revenue < 0 OR reversals < 0 OR orders < 0 OR avg_order_value < 0"
        ).fetchall()[0][0]
        report.add("hourly_sales.non_negative", negative == 0,
                   f"{negative} hours with negative gross revenue, reversals, orders or average")  # fmt: skip
    if "top_products" in present:
        n, ranks = con.execute("SELECT count(*), list(rank ORDER BY rank) FROM top_products").fetchall()[0]
        ok = n <= TOP_N_PRODUCTS and ranks == list(range(1, n + 1))
        report.add("top_products.at_most_10_ranked", ok, f"{n} rows, ranks {ranks}")

    rdd_folder = publication.output_dir(root, version, RDD_OUTPUT, date)
    rdd_present = rdd_folder.is_dir() and any(rdd_folder.glob("part-*"))
    report.add(f"{RDD_OUTPUT}.exists", rdd_present, str(rdd_folder))
    if rdd_present and {"sales_by_product", "hourly_sales", "regional_revenue"} <= present:
        products, rdd_revenue = _rdd_total(rdd_folder)
        totals = {
            name: con.execute(f"SELECT coalesce(sum({col}), 0) FROM {name}").fetchall()[0][0]
            for name, col in (
                ("sales_by_product", "net_revenue"),
                ("hourly_sales", "net_revenue"),
                ("regional_revenue", "net_revenue"),
            )
        }
        totals[RDD_OUTPUT] = rdd_revenue
        agree = len({Decimal(v) for v in totals.values()}) == 1
        report.add("totals_agree_rdd_vs_dataframe", agree,
                   ", ".join(f"{k}={v}" for k, v in totals.items()))  # fmt: skip
        df_products = con.execute("SELECT count(*) FROM sales_by_product").fetchall()[0][0]
        report.add("products_agree_rdd_vs_dataframe", products == df_products,
                   f"rdd {products} products, dataframe {df_products}")  # fmt: skip
    reconcile_with_raw(report, con, present, snapshot, date)
    return report


def publish_validated(report: Report, transformed: Path | None = None) -> publication.Publication:
    """Publishes the version a passing report checked, recording the inputs it was made from; of a
    failing one, records the failure (nothing published)."""
    root = publication.transformed_root(transformed)
    pinned = publication.read_inputs(root, report.version).get(report.date)
    if pinned is None:
        raise ValueError(f"version {report.version} pinned no inputs for {report.date}")
    if not report.passed:
        return publication.record_failure(report.date, report.version, pinned["fingerprint"],
                                          len(report.checks), [c.name for c in report.failed])  # fmt: skip
    return publication.publish(report.date, report.version, pinned["fingerprint"], len(report.checks))


def report_file(date: str, transformed: Path | None = None) -> Path:
    """Where the latest validation of `date` is kept (whatever version it checked)."""
    return (transformed or paths().transformed).resolve() / "_validation" / f"{date}.json"


def write_report(report: Report, transformed: Path | None = None) -> Path:
    target = report_file(report.date, transformed)
    write_json_atomically(target, report.as_dict())
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--date", required=True)
    parser.add_argument("--transformed-dir", type=Path, default=None)
    parser.add_argument("--version", default=None, help="a run's version (default: the published one)")
    parser.add_argument("--publish", action="store_true", help="publish --version if every check passes")
    args = parser.parse_args(argv)
    report = validate(args.date, args.transformed_dir, args.version)
    write_report(report, args.transformed_dir)
    print(report.text())
    if args.publish and args.version:
        publish_validated(report, args.transformed_dir)
        print(f"{'published' if report.passed else 'not published'} {args.date}: version {report.version}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
