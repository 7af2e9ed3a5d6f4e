"""Running a streaming job's queries to their end: each finished micro-batch logged as one line
(records in, rows written per sink, state) and handed on, the first failure raised.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from shopstream.spark.session import job_logger

log = job_logger("stream")

REDELIVERED = "redelivered"  # ... and the re-delivered copies the stream dropped


def progress_dict(progress) -> dict:
    """A query's progress report as a dict (PySpark gives objects or dicts by version)."""
    return json.loads(progress.json) if hasattr(progress, "json") else dict(progress)


def rows_written(progress: dict) -> dict[str, int]:
    """Rows a micro-batch wrote per sink: the query's observation (named after the query) counts
    them, one metric per sink; plus the re-delivered copies its de-duplication dropped, if any."""
    observed = (progress.get("observedMetrics") or {}).get(progress.get("name")) or {}
    written = {sink: int(rows) for sink, rows in observed.items()}
    dropped = [
        op["customMetrics"]["numDroppedDuplicateRows"]
        for op in progress.get("stateOperators") or []
        if "numDroppedDuplicateRows" in (op.get("customMetrics") or {})
    ]
    if dropped:
        written[REDELIVERED] = int(sum(dropped))
    return written


def log_progress(progress: dict) -> None:
    """One line per micro-batch: records in, rows written per sink, duration."""
    counts = rows_written(progress)
    redelivered = counts.pop(REDELIVERED, None)
    written = ", ".join(f"{rows} {sink}" for sink, rows in counts.items()) or "?"
    if redelivered is not None:
        written += f" ({redelivered} re-delivered copies dropped)"
    # Stateful queries also report their late drops, and their state's rows where RocksDB counts
    # them (spark-defaults turn the count off: it costs a read per write).
    state = progress.get("stateOperators") or []
    stateful = ""
    if state:
        if state_rows := sum(op.get("numRowsTotal", 0) for op in state):
            stateful += f", state {state_rows} rows"
        stateful += f", {sum(op.get('numRowsDroppedByWatermark', 0) for op in state)} dropped as late"
    log.info(
        "%s batch %s: %s records in, rows written: %s, %.1f s%s",
        progress.get("name"),
        progress.get("batchId"),
        progress.get("numInputRows"),
        written,
        (progress.get("durationMs") or {}).get("triggerExecution", 0) / 1000,
        stateful,
    )


def await_queries(
    queries: list,
    sinks: Sequence[str],
    poll_seconds: float = 2.0,
    on_progress: Callable[[dict], None] | None = None,
    on_poll: Callable[[], object] | None = None,
) -> dict[str, int]:
    """Waits for every query to end, logging each finished micro-batch as it appears (polling:
    a Python listener would need a py4j callback server racing the JVM's shutdown) and handing it
    to `on_progress`; `on_poll` runs before each wait. Raises the first query failure. Returns the
    rows written per sink (see `rows_written`)."""
    seen: set[tuple[str, int]] = set()
    written: dict[str, int] = dict.fromkeys(sinks, 0)

    def drain_progress() -> None:
        for query in queries:
            for progress in map(progress_dict, query.recentProgress):
                key = (query.name, progress["batchId"])
                if key in seen or progress.get("numInputRows") is None:
                    continue
                seen.add(key)
                log_progress(progress)
                for sink, rows in rows_written(progress).items():
                    written[sink] = written.get(sink, 0) + rows  # also copies a de-dup dropped
                if on_progress is not None:
                    on_progress(progress)

    while any(q.isActive for q in queries):
        if on_poll is not None:
            on_poll()
        next(q for q in queries if q.isActive).awaitTermination(poll_seconds)
        drain_progress()
    drain_progress()
    for query in queries:
        query.awaitTermination()  # re-raises a failed query's exception
    return written


def run_queries(
    queries: list,
    sinks: Sequence[str],
    on_poll: Callable[[], object] | None = None,
    on_progress: Callable[[dict], None] | None = None,
) -> dict[str, int]:
    """Waits for the queries (see await_queries) and stops any still active, also on failure."""
    try:
        return await_queries(queries, sinks, on_poll=on_poll, on_progress=on_progress)
    finally:
        for query in queries:
            if query.isActive:
                query.stop()
