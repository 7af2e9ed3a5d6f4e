"""What a user of the tables runs, given only the catalog's settings files that
`lake.write_client_settings` writes: plain Spark SQL and PyIceberg + DuckDB in new Python processes
that never import shopstream, and a Trino server; and the oracle their rows must equal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import duckdb_oracle, oracle
from tests.duckdb_oracle import ORACLE_COLUMNS
from tests.kafka_read import distinct_events
from tests.trino_server import execute, trino_server


def oracle_outputs(messages: list, dates: list[str]) -> dict[str, list[tuple]]:
    """Each output's rows of `dates`, as strings, recomputed by DuckDB from the Kafka `messages`
    (their valid events, each counted once)."""
    delivered = [json.loads(m.value) for m in messages if not oracle.problems(m.value)]
    truth = duckdb_oracle.connect(distinct_events(delivered))
    return {
        output: sorted(
            tuple(map(str, row)) for row in duckdb_oracle.expected(truth, output) if str(row[0]) in dates
        )
        for output in ORACLE_COLUMNS
    }


def read_everywhere(folder, dates: list[str]) -> dict[str, dict[str, list[tuple]]]:
    """Reader -> output -> its rows of `dates` (sorted, as strings), read by each reader alone."""
    found = {}
    for name, code in (("spark-sql", SPARK_SQL_READER), ("pyiceberg+duckdb", PYICEBERG_READER)):
        got = read_in_a_clean_process(code, folder, dates)
        assert got.pop("imported_shopstream") is False, name
        found[name] = got
    found["trino"] = read_with_trino(folder, dates)
    return {
        name: {output: sorted(map(tuple, rows)) for output, rows in got.items()}
        for name, got in found.items()
    }


def read_with_trino(folder, dates: list[str]) -> dict:
    """A Trino server given only the catalog file `write_client_settings` wrote queries each output."""
    import trino

    from shopstream.lake import CATALOG, namespace

    dates_in = ", ".join(f"DATE '{d}'" for d in dates)
    got = {}
    with trino_server(folder / "trino" / f"{CATALOG}.properties", folder / "trino-server") as port:
        cursor = trino.dbapi.connect(host="127.0.0.1", port=port, user="test", catalog=CATALOG,
                                     schema=namespace()).cursor()  # fmt: skip
        hour = "format_datetime(hour AT TIME ZONE 'UTC', 'yyyy-MM-dd HH:mm:ss') AS hour,"
        for output, columns in ORACLE_COLUMNS.items():
            columns = columns.replace("hour,", hour)
            rows = execute(cursor, f"SELECT {columns} FROM {output} WHERE date IN ({dates_in})")
            got[output] = [[str(v) for v in row] for row in rows]
    return got


# Plain PySpark with the catalog's settings file as spark-sql's --properties-file reads it.
SPARK_SQL_READER = """
import json, os, sys
from pyspark.sql import SparkSession

builder = SparkSession.builder.master("local[1]")
for line in open(os.environ["SPARK_CONF"]):
    key, value = line.rstrip("\\n").split(" ", 1)
    builder = builder.config(key, value)
spark = builder.config("spark.sql.session.timeZone", "UTC").getOrCreate()
got = {}
for output, columns in json.loads(os.environ["OUTPUT_COLUMNS"]).items():
    columns = columns.replace("hour,", "date_format(hour, 'yyyy-MM-dd HH:mm:ss') AS hour,").replace('"', "`")
    dates = ", ".join(f"DATE'{d}'" for d in json.loads(os.environ["DATES"]))
    table = f"lake.{os.environ['NS']}.{output}"
    rows = spark.sql(f"SELECT {columns} FROM {table} WHERE date IN ({dates})").collect()
    got[output] = [[str(v) for v in row] for row in rows]
got["imported_shopstream"] = any(m.startswith("shopstream") for m in sys.modules)
print(json.dumps(got))
"""

# PyIceberg (its settings in PYICEBERG_HOME) handing each table to DuckDB.
PYICEBERG_READER = """
import json, os, sys
from pyiceberg.catalog import load_catalog

catalog = load_catalog("lake")
got = {}
for output, columns in json.loads(os.environ["OUTPUT_COLUMNS"]).items():
    columns = columns.replace("hour,", "strftime(timezone('UTC', hour), '%Y-%m-%d %H:%M:%S') AS hour,")
    con = catalog.load_table(f"{os.environ['NS']}.{output}").scan().to_duckdb("t")
    dates = ", ".join(f"DATE '{d}'" for d in json.loads(os.environ["DATES"]))
    rows = con.execute(f"SELECT {columns} FROM t WHERE date IN ({dates})").fetchall()
    got[output] = [[str(v) for v in row] for row in rows]
got["imported_shopstream"] = any(m.startswith("shopstream") for m in sys.modules)
print(json.dumps(got))
"""


def read_in_a_clean_process(code: str, folder, dates: list[str]) -> dict:
    """Runs a reader in a new Python that has only the settings files (no shopstream on its path)."""
    from shopstream.lake import namespace

    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PYICEBERG_HOME": str(folder),
           "SPARK_CONF": str(folder / "spark-lake.conf"), "NS": namespace(), "DATES": json.dumps(dates),
           "OUTPUT_COLUMNS": json.dumps(ORACLE_COLUMNS), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "JAVA_HOME": os.environ.get("JAVA_HOME", "")}  # fmt: skip
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, env=env,
                            cwd=folder, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
