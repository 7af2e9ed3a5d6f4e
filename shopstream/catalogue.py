"""The shop's reference data the producer and the jobs share: `data/products.csv` (the catalogue
order-sim draws from) and `data/regions.csv` (joined by the DataFrame job). Read with the csv
module (quoted fields such as "Socks, 3-pack" included), prices held to the contract's money
scale, as the Rust producer reads them."""

from __future__ import annotations

import csv
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from shopstream.config import PRODUCTS_CSV, REGIONS_CSV
from shopstream.contract import MONEY_SCALE

# data/regions.csv, as a Spark DDL schema (read with the header, never inferred).
REGIONS_DDL = (
    "region_code string, region_name string, country string, continent string, currency string, weight int"
)


class CatalogueError(ValueError):
    """A catalogue row the contract cannot carry (e.g. a price finer than the cent)."""


def read_products(file: Path) -> dict[str, dict[str, str]]:
    """product_id -> {product_name, category, unit_price, weight} of a products CSV; a price
    with more decimals than the contract's money scale is refused, naming the product."""
    with file.open(newline="", encoding="utf-8") as f:
        products = {row["product_id"]: row for row in csv.DictReader(f)}
    for product_id, row in products.items():
        if -Decimal(row["unit_price"]).as_tuple().exponent > MONEY_SCALE:
            raise CatalogueError(
                f"{file}: product {product_id} costs {row['unit_price']}: at most {MONEY_SCALE} decimals"
            )
    return products


@lru_cache(maxsize=1)
def product_catalogue() -> dict[str, dict[str, str]]:
    """The products of data/products.csv (see `read_products`)."""
    return read_products(PRODUCTS_CSV)


@lru_cache(maxsize=1)
def region_codes() -> tuple[str, ...]:
    return tuple(regions_by_code())


def regions_by_code() -> dict[str, dict[str, str]]:
    """region_code -> its row of data/regions.csv (name, country, continent, ...)."""
    with REGIONS_CSV.open(newline="", encoding="utf-8") as f:
        return {row["region_code"]: row for row in csv.DictReader(f)}
