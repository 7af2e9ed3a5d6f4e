"""Data-quality checks of every transformed output for one date, with a readable report.

    python -m shopstream.validation --date 2026-11-20

Reads the outputs with DuckDB (no JVM needed), so the DAG's `validate_output` task is quick and
independent of the Spark code that wrote them. Exit code 1 and a report naming each failed check.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb

from shopstream.config import paths
from shopstream.metrics import TOP_N_PRODUCTS

# Output -> (columns that must exist, key columns that must never be null).
EXPECTED_OUTPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "hourly_sales": (
        ("hour", "total_orders", "gross_revenue", "refunds", "total_revenue", "avg_order_value"),
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
        lines = [f"validation of {self.date}: {'PASSED' if self.passed else 'FAILED'} "
                 f"({len(self.checks) - len(self.failed)}/{len(self.checks)} checks passed)"]  # fmt: skip
        lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks]
        return "\n".join(lines)

    def to_json(self) -> str:
        checks = [asdict(c) for c in self.checks]
        return json.dumps({"date": self.date, "passed": self.passed, "checks": checks}, indent=2)


def _partition(root: Path, name: str, date: str) -> Path:
    return root / name / f"date={date}"


def _scan(folder: Path) -> str:
    return f"read_parquet('{folder}/*.parquet')"


def _rdd_total(folder: Path) -> tuple[int, Decimal]:
    lines = [line for part in sorted(folder.glob("part-*")) for line in part.read_text().splitlines()]
    return len(lines), sum((Decimal(line.split("\t")[1]) for line in lines), Decimal(0))


def validate(date: str, transformed: Path | None = None) -> Report:
    root = (transformed or paths().transformed).resolve()
    report = Report(date)
    con = duckdb.connect()
    present: dict[str, Path] = {}
    for name, (columns, keys) in EXPECTED_OUTPUTS.items():
        folder = _partition(root, name, date)
        files = list(folder.glob("*.parquet"))
        report.add(f"{name}.exists", bool(files), f"{len(files)} file(s) in {folder}")
        if not files:
            continue
        present[name] = folder
        have = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {_scan(folder)}").fetchall()}
        missing = [c for c in columns if c not in have]
        report.add(
            f"{name}.schema", not missing, f"missing columns {missing}" if missing else "all columns present"
        )
        rows = con.execute(f"SELECT count(*) FROM {_scan(folder)}").fetchall()[0][0]
        report.add(f"{name}.row_count", rows > 0, f"{rows} rows")
        if missing:
            continue
        nulls = con.execute(
            f"SELECT count(*) FROM {_scan(folder)} WHERE " + " OR ".join(f'"{k}" IS NULL' for k in keys)
        ).fetchall()[0][0]
        report.add(f"{name}.no_null_keys", nulls == 0, f"{nulls} rows with a null {'/'.join(keys)}")

    if "hourly_sales" in present:
        negative = con.execute(
            f"SELECT count(*) FROM {_scan(present['hourly_sales'])} "
            "WHERE gross_revenue < 0 OR refunds < 0 OR total_orders < 0 OR avg_order_value < 0"
        ).fetchall()[0][0]
        report.add("hourly_sales.non_negative", negative == 0,
                   f"{negative} hours with negative gross revenue, refunds, orders or average")  # fmt: skip
    if "top_products" in present:
        n, ranks = con.execute(
            f"SELECT count(*), list(rank ORDER BY rank) FROM {_scan(present['top_products'])}"
        ).fetchall()[0]
        ok = n <= TOP_N_PRODUCTS and ranks == list(range(1, n + 1))
        report.add("top_products.at_most_10_ranked", ok, f"{n} rows, ranks {ranks}")

    rdd_folder = _partition(root, RDD_OUTPUT, date)
    rdd_present = rdd_folder.is_dir() and any(rdd_folder.glob("part-*"))
    report.add(f"{RDD_OUTPUT}.exists", rdd_present, str(rdd_folder))
    if rdd_present and {"sales_by_product", "hourly_sales", "regional_revenue"} <= present.keys():
        products, rdd_revenue = _rdd_total(rdd_folder)
        totals = {
            name: con.execute(f"SELECT coalesce(sum({col}), 0) FROM {_scan(present[name])}").fetchall()[0][0]
            for name, col in (
                ("sales_by_product", "net_revenue"),
                ("hourly_sales", "total_revenue"),
                ("regional_revenue", "net_revenue"),
            )
        }
        totals[RDD_OUTPUT] = rdd_revenue
        agree = len({Decimal(v) for v in totals.values()}) == 1
        report.add("totals_agree_rdd_vs_dataframe", agree,
                   ", ".join(f"{k}={v}" for k, v in totals.items()))  # fmt: skip
        df_products = con.execute(f"SELECT count(*) FROM {_scan(present['sales_by_product'])}").fetchall()[0][
            0
        ]
        report.add("products_agree_rdd_vs_dataframe", products == df_products,
                   f"rdd {products} products, dataframe {df_products}")  # fmt: skip
    return report


def write_report(report: Report, transformed: Path | None = None) -> Path:
    folder = (transformed or paths().transformed).resolve() / "_validation"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{report.date}.json"
    target.write_text(report.to_json() + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--date", required=True)
    parser.add_argument("--transformed-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    report = validate(args.date, args.transformed_dir)
    write_report(report, args.transformed_dir)
    print(report.text())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
