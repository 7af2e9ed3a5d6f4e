"""One writer per ingest sink, and how a scheduled run waits for the live one.

The continuous ingest service (`stream_consumer --trigger 1m`, `make stream-up`) is the production
mode. Only one query may write a sink and its checkpoint: each takes an exclusive lock next to the
checkpoint and holds it while it runs, naming itself in the lock file. A second writer fails fast
with a message naming the first; the DAG's `--available-now` run, finding the live service at work,
does not start a query at all but waits until the live query has committed every offset the topic
held when the run started (`wait_for_offsets`).

`flock` locks are per host: the lock guards one machine's processes (the local stack, one driver
host). Writers on several hosts need a lock service of the cluster's (or Spark's own refusal to run
two queries on one checkpoint, which only holds within one driver).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

LOCK_FILE = "writer.lock"
LIVE, AVAILABLE_NOW = "live", "available-now"


class SinkBusy(RuntimeError):
    """Another query writes this sink; the message names it and what to do."""


@dataclass(frozen=True)
class Writer:
    pid: int
    host: str
    mode: str  # LIVE or AVAILABLE_NOW
    started: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, {self.mode} writer since {self.started}"


class WriterLock:
    """The exclusive lock of one checkpoint's writer, held as long as this process keeps it."""

    def __init__(self, checkpoint: Path) -> None:
        self.path = checkpoint / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, mode: str) -> bool:
        """Takes the lock for this process (True), or leaves it to its holder (False)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        me = Writer(
            os.getpid(), socket.gethostname(), mode, dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        )
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(asdict(me)).encode())
        self._fd = fd
        return True

    def holder(self) -> Writer | None:
        """Who holds the lock (as it wrote itself down), if anyone does."""
        try:
            return Writer(**json.loads(self.path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def newest_batch(query_checkpoint: Path, log: str) -> int | None:
    """The newest batch id in one of a query's logs: `offsets` (planned) or `commits` (done)."""
    folder = query_checkpoint / log
    batches = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(batches, default=None)


def committed_offsets(query_checkpoint: Path) -> dict[str, dict[int, int]]:
    """The Kafka offsets (exclusive ends, per topic and partition) up to which the query's output
    is committed: the offset log entry of its newest committed batch."""
    batch = newest_batch(query_checkpoint, "commits")
    if batch is None:
        return {}
    lines = (query_checkpoint / "offsets" / str(batch)).read_text().splitlines()
    # 'v1', the batch metadata, then one line per source: {"topic": {"0": offset, ...}} (a join
    # of two topics has two).
    sources = [json.loads(line) for line in lines[2:] if line.strip()]
    return {topic: {int(p): int(o) for p, o in parts.items()} for s in sources for topic, parts in s.items()}


def caught_up(committed: dict[str, dict[int, int]], topic: str, ends: dict[int, int]) -> bool:
    """Whether every partition's committed offset has reached `ends` (a topic's end offsets)."""
    mine = committed.get(topic, {})
    return all(mine.get(partition, 0) >= end for partition, end in ends.items() if end > 0)


def wait_for_offsets(
    query_checkpoint: Path, topic: str, ends: dict[int, int], lock: WriterLock, timeout: float,
    poll: float = 2.0, log: Callable[[str], None] = print,
) -> bool:  # fmt: skip
    """Waits until the live query has committed `ends` (True), or until its writer is gone
    (False: the caller then ingests itself). Raises TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if caught_up(committed_offsets(query_checkpoint), topic, ends):
            return True
        if lock.acquire(AVAILABLE_NOW):
            return False  # the live writer stopped: the lock is ours now
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the live ingest query did not commit {topic} up to {ends} within {timeout:.0f} s "
                f"(it is {lock.holder().describe() if lock.holder() else 'unknown'}): is it stuck?"
            )
        log(f"waiting for the live ingest query to commit {topic} up to {ends}")
        time.sleep(poll)
