"""An S3-compatible object store for the tests: moto's server (`make setup` installs it in
`.state/s3-server`, a venv of its own) on a free loopback port, with one bucket. The engines reach
it as they reach S3, by endpoint and keys: nothing of shopstream runs in it."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shopstream.config import REPO_ROOT
from shopstream.devstack.processes import ManagedProcess, free_port

START_TIMEOUT_S = 60


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str
    bucket: str
    access_key: str = "shopstream-test"
    secret_key: str = "shopstream-test-secret"
    region: str = "us-east-1"

    def iceberg_io(self) -> dict[str, str]:
        """Iceberg's file-IO catalog properties for this store (`SHOPSTREAM_LAKE_IO`)."""
        return {"s3.endpoint": self.endpoint, "s3.path-style-access": "true", "client.region": self.region,
                "s3.access-key-id": self.access_key, "s3.secret-access-key": self.secret_key}  # fmt: skip

    def object_keys(self) -> list[str]:
        """Every object's key in the bucket (moto lists them all without credentials' checks)."""
        import re

        with urllib.request.urlopen(f"{self.endpoint}/{self.bucket}?list-type=2&max-keys=100000") as answer:
            return re.findall(r"<Key>([^<]+)</Key>", answer.read().decode())


def server_bin() -> Path:
    home = Path(os.environ.get("SHOPSTREAM_S3_SERVER_HOME", REPO_ROOT / ".state" / "s3-server"))
    if not (home / "bin" / "moto_server").exists():
        raise RuntimeError(f"no S3 server in {home}: run `make setup`")
    return home / "bin" / "moto_server"


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/", timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def s3_server(folder: Path, bucket: str = "shopstream-lake") -> Iterator[ObjectStore]:
    """The server with `bucket` made; its log under `folder`; stopped on exit."""
    port = free_port()
    store = ObjectStore(f"http://127.0.0.1:{port}", bucket)
    server = ManagedProcess(folder / "s3.pid", folder / "s3.log")
    server.launch([str(server_bin()), "-H", "127.0.0.1", "-p", str(port)])
    try:
        server.wait_until(lambda: _answers(store.endpoint), RuntimeError, "S3 server", START_TIMEOUT_S,
                          poll_seconds=0.5)  # fmt: skip
        urllib.request.urlopen(urllib.request.Request(f"{store.endpoint}/{bucket}", method="PUT")).close()
        yield store
    finally:
        server.stop()
