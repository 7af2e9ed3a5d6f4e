"""`make bench SMOKE=1`: the harness itself runs end to end on small sizes and writes a complete
table. Its figures are not checked (speed is measured by the benchmarks, never asserted)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bench.batch import MAX_WARM_UP_RUNS, steady_state
from bench.common import run_stoppable
from shopstream.config import REPO_ROOT

STAGES = (
    "Spark session start",
    "Producer: order-sim → Kafka",
    "Generation alone",
    "order-sim peak RSS",
    "Streaming ingest",
    "Batch RDD job",
    "Batch DataFrame job",
    "End to end",
    "Latency commit",
    "Live: event produced",
    "Live aggregation",
    "Dashboard refresh",
    "Raw table under",
)


def replay(*seconds: float):
    """A `run_once` returning these timings in turn."""
    runs = iter(seconds)
    return lambda: {"job": next(runs)}


def test_steady_state_counts_only_runs_after_two_agree():
    # A fresh JVM's DataFrame job: 9.7, 4.2, 3.7, 3.4 (within 5% of 3.5 next), then the timed runs.
    timing = steady_state(replay(9.7, 4.2, 3.7, 3.4, 3.5, 3.6, 3.3, 9.0))
    assert timing == {"job": 3.6, "warm_up_runs": 5}


def test_steady_state_stops_warming_up_at_its_limit_and_without_warm_up_runs_once():
    alternating = [4.0, 5.0] * MAX_WARM_UP_RUNS
    timing = steady_state(replay(*alternating[:MAX_WARM_UP_RUNS], 1.0, 2.0, 3.0))
    assert timing == {"job": 2.0, "warm_up_runs": MAX_WARM_UP_RUNS}
    assert steady_state(replay(7.0), warm_up=False) == {"job": 7.0, "warm_up_runs": 0}


def test_a_bench_that_overruns_is_stopped_by_sigterm_and_its_cleanup_runs(tmp_path):
    # What `make run` does at exit (its trap stops the broker it started); the run overruns.
    script = f"trap 'echo stopped > {tmp_path}/broker' EXIT; echo started > {tmp_path}/broker; sleep 60"
    with pytest.raises(subprocess.TimeoutExpired):
        run_stoppable(["bash", "-c", script], timeout=2)
    assert (tmp_path / "broker").read_text() == "stopped\n"


def test_sigterm_ends_a_bench_through_its_context_managers(tmp_path):
    code = (
        "import contextlib, os, signal, sys\n"
        "from bench.common import exit_on_sigterm\n"
        "exit_on_sigterm()\n"
        "with contextlib.ExitStack() as stack:\n"
        f"    stack.callback(lambda: open('{tmp_path}/broker', 'w').write('stopped'))\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 143
    assert (tmp_path / "broker").read_text() == "stopped"


@pytest.mark.integration
@pytest.mark.timeout(1200)  # 5.5 min alone; 10-11.5 min beside the other worker's heaviest tests
def test_smoke_run_writes_a_complete_table_around_existing_text(tmp_path):
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nProse that must survive.\n")

    # Stopped by SIGTERM if it overruns, so that it stops its broker and database too.
    result = run_stoppable([sys.executable, "-m", "bench.run", "--smoke", "--output", str(output)], 1140,
                           cwd=REPO_ROOT)  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    text = output.read_text()
    assert text.startswith("# Benchmarks\n\nProse that must survive.\n")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| stage")]
    for stage in STAGES:
        assert any(row.startswith(f"| {stage}") for row in rows), f"no row for {stage}"
    assert sum(row.startswith("| Latency") for row in rows) == 2
    (end_to_end,) = [row for row in rows if row.startswith("| End to end")]
    for task in ("run_streaming_job", "run_rdd_etl", "run_df_etl"):  # others too when they take 0.5 s
        assert re.search(rf"\b{task} \d+\b", end_to_end), end_to_end
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 6 and any(ch.isdigit() for ch in cells[1]), row
        assert cells[5] in ("yes", "**no**", "—"), row
    assert "Machine: " in text and "cores" in text
