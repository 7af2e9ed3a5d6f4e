"""The tests' own reading of the Iceberg tables: PyIceberg and DuckDB, as any user's notebook
reads them (catalog settings from `shopstream.lake`, nothing else of shopstream's)."""

from __future__ import annotations

import functools

import duckdb
from pyiceberg.catalog.sql import SqlCatalog

from shopstream.lake import CATALOG, lake_settings, namespace, pyiceberg_properties


@functools.cache
def _catalog(properties: frozenset[tuple[str, str]]) -> SqlCatalog:
    return SqlCatalog(CATALOG, **dict(properties))


def catalog() -> SqlCatalog:
    """The catalog the test's settings name (one client per catalog database and warehouse)."""
    return _catalog(frozenset(pyiceberg_properties(lake_settings()).items()))


def table(name: str):
    return catalog().load_table(f"{namespace()}.{name}")


def snapshot_id(name: str, ref: str | int = "main") -> int | None:
    """A snapshot id by branch name (or the id itself)."""
    if isinstance(ref, int):
        return ref
    found = table(name).snapshot_by_name(ref)
    return found.snapshot_id if found else None


def rows(name: str, columns: str = "*", order: str = "ALL", ref: str | int = "main",
         where: str = "true") -> list[tuple]:  # fmt: skip
    """`SELECT columns FROM name WHERE where ORDER BY order` at a branch or snapshot, in DuckDB."""
    snapshot = snapshot_id(name, ref)
    if snapshot is None:
        return []
    data = table(name).scan(snapshot_id=snapshot).to_arrow()  # noqa: F841 - DuckDB reads it by name
    return duckdb.sql(f"SELECT {columns} FROM data WHERE {where} ORDER BY {order}").fetchall()


def exists(name: str) -> bool:
    return catalog().table_exists(f"{namespace()}.{name}")
