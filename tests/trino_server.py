"""A Trino server for the tests: the one `make setup` installs (`.state/trino/server`, its Iceberg
plugin only), on a free loopback port, with one catalog file copied in as a user copies it into
`etc/catalog/`. Trino reads the tables as any engine would: nothing of shopstream runs in it."""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shopstream.config import REPO_ROOT, extra_jvm_options
from shopstream.devstack.processes import ManagedProcess, free_port

# Trino 476 needs Java 24 or newer: the machine's second JDK, not the default Java 17.
JAVA_HOME = os.environ.get("SHOPSTREAM_TRINO_JAVA_HOME", "/usr/lib/jvm/temurin-25-jdk-amd64")
START_TIMEOUT_S = 180
NODES_TIMEOUT_S = 60


def server_home() -> Path:
    # Installed by `make setup` beside the jars, shared by every state folder (tests use throwaway ones).
    home = Path(os.environ.get("SHOPSTREAM_TRINO_HOME", REPO_ROOT / ".state" / "trino" / "server"))
    if not (home / "bin" / "launcher").exists():
        raise RuntimeError(f"no Trino server in {home}: run `make setup`")
    if not (Path(JAVA_HOME) / "bin" / "java").exists():
        raise RuntimeError(f"no Java in {JAVA_HOME}: Trino needs Java 24+ (SHOPSTREAM_TRINO_JAVA_HOME)")
    return home


def write_etc(etc: Path, data: Path, port: int, catalog_file: Path) -> None:
    """A single-node coordinator's settings, and the catalog file under its own name."""
    (etc / "catalog").mkdir(parents=True)
    shutil.copy(catalog_file, etc / "catalog" / catalog_file.name)
    # With the other JVMs' extra options (the tests' C1 alone: ready sooner on 40% less CPU).
    jvm = ["-server", "-Xmx1G", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError",
           "-Djdk.attach.allowAttachSelf=true", *extra_jvm_options()]  # fmt: skip
    texts = {
        "node.properties": f"node.environment=test\nnode.id=shopstream-test\nnode.data-dir={data}\n"
        "node.internal-address=127.0.0.1\n",
        "jvm.config": "".join(f"{option}\n" for option in jvm),
        "config.properties": f"coordinator=true\nnode-scheduler.include-coordinator=true\n"
        f"http-server.http.port={port}\ndiscovery.uri=http://127.0.0.1:{port}\n"
        "query.max-memory=512MB\nquery.max-memory-per-node=512MB\n",
    }
    for name, text in texts.items():
        (etc / name).write_text(text)


def ready(port: int) -> bool:
    """Started, and its coordinator has announced itself as a worker (queries before that fail
    with NO_NODES_AVAILABLE)."""
    import trino

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/info", timeout=2) as answer:
            if b'"starting":false' not in answer.read():
                return False
        cursor = trino.dbapi.connect(host="127.0.0.1", port=port, user="test").cursor()
        cursor.execute("SELECT count(*) FROM system.runtime.nodes WHERE state = 'active'")
        return cursor.fetchall()[0][0] > 0
    except (OSError, trino.exceptions.TrinoQueryError):
        return False


@contextmanager
def trino_server(catalog_file: Path, folder: Path) -> Iterator[int]:
    """Trino with `catalog_file` as its only catalog, its settings and data under `folder`;
    yields its port, stops it (its whole process group) on exit."""
    port = free_port()
    etc, data = folder / "etc", folder / "data"
    write_etc(etc, data, port, catalog_file)
    server = ManagedProcess(folder / "server.pid", folder / "server.log")
    server.launch([str(server_home() / "bin" / "launcher"), "run", f"--etc-dir={etc}", f"--data-dir={data}",
                   f"--jvm-dir={JAVA_HOME}"])  # fmt: skip
    try:
        server.wait_until(lambda: ready(port), RuntimeError, "Trino", START_TIMEOUT_S, poll_seconds=1)
        yield port
    finally:
        server.stop()


def execute(cursor, sql: str) -> list:
    """`sql`'s rows. Right after the start, the coordinator may not yet list itself as a node of
    the catalog (NO_NODES_AVAILABLE: its node list is refreshed every few seconds, apart from the
    readiness `ready` sees): such a query is tried again, for up to NODES_TIMEOUT_S."""
    import trino

    deadline = time.monotonic() + NODES_TIMEOUT_S
    while True:
        try:
            cursor.execute(sql)
            return cursor.fetchall()
        except trino.exceptions.TrinoQueryError as error:
            if error.error_name != "NO_NODES_AVAILABLE" or time.monotonic() > deadline:
                raise
            time.sleep(1)
