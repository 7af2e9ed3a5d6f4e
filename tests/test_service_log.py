"""A managed process's log stays bounded however long the process runs, and keeps its latest lines."""

from __future__ import annotations

import sys
import time

from shopstream.devstack import service_log
from shopstream.devstack.processes import ManagedProcess


def logged_lines(log_file) -> list[str]:
    """Every line kept, oldest first: the backups `.4` ... `.1`, then the log itself."""
    files = [log_file.with_name(f"{log_file.name}.{n}") for n in range(service_log.BACKUPS, 0, -1)]
    return [line for f in [*files, log_file] if f.exists() for line in f.read_text().splitlines()]


def test_the_log_rolls_over_at_its_limit_and_keeps_the_newest_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPSTREAM_SERVICE_LOG_MAX_MB", "0.01")  # ≈ 10 KB
    log_file = tmp_path / "service.log"
    log_file.write_text("from an earlier run\n")
    handler = service_log.rotating_file(log_file)

    service_log.copy_lines((f"line {n:05d} {'x' * 80}\n".encode() for n in range(2000)), handler)
    handler.close()

    files = sorted(f for f in tmp_path.iterdir() if not f.name.startswith("."))  # not the writers' lock
    assert [f.name for f in files] == ["service.log", *(f"service.log.{n}" for n in range(1, 5))]
    assert all(f.stat().st_size <= service_log.max_bytes() for f in files)
    kept = logged_lines(log_file)
    assert kept[-1].startswith("line 01999 ") and len(kept) > 4 * 100
    numbers = [int(line.split()[1]) for line in kept]
    assert numbers == list(range(numbers[0], 2000)), "the newest lines, in order, none lost between files"


def test_two_writers_of_one_log_keep_every_line_in_order_across_roll_overs(tmp_path, monkeypatch):
    # After a quick restart the old service's writer may still drain while the new one appends.
    monkeypatch.setenv("SHOPSTREAM_SERVICE_LOG_MAX_MB", "0.001")  # ≈ 1 KB: a roll-over every 10 lines
    log_file = tmp_path / "service.log"
    old, new = service_log.rotating_file(log_file), service_log.rotating_file(log_file)

    for n in range(40):
        service_log.copy_lines([f"line {n:03d} {'x' * 90}\n".encode()], old if n % 3 else new)
    old.close()
    new.close()

    assert logged_lines(log_file) == [f"line {n:03d} {'x' * 90}" for n in range(40)]
    files = [f for f in tmp_path.iterdir() if not f.name.startswith(".")]
    assert len(files) == 4 and all(f.stat().st_size <= service_log.max_bytes() for f in files)


def test_a_managed_processs_output_reaches_its_log_until_it_stops(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPSTREAM_SERVICE_LOG_MAX_MB", "0.01")
    process = ManagedProcess(tmp_path / "svc.pid", tmp_path / "svc.log")
    # A service that logs 30 KB at once, then a line per 50 ms until SIGTERM, and a last word.
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('stopping', flush=True), sys.exit(0)))\n"
        "for n in range(300): print(f'burst {n:03d} ' + 'x' * 90, flush=True)\n"
        "while True: print('tick', flush=True); time.sleep(0.05)\n"
    )
    process.launch([sys.executable, "-c", script])
    pid = process.pid()
    assert pid is not None
    process.wait_until(lambda: "tick" in process.log_file.read_text(), RuntimeError, "the service", 20)

    assert process.stop(timeout=10)

    deadline = time.monotonic() + 10
    while logged_lines(process.log_file)[-1:] != ["stopping"] and time.monotonic() < deadline:
        time.sleep(0.05)  # the log writer drains the pipe after the service has gone
    kept = logged_lines(process.log_file)
    assert kept[-1] == "stopping"
    assert (tmp_path / "svc.log.1").exists() and process.log_file.stat().st_size <= service_log.max_bytes()
    assert process.pid() is None and not (tmp_path / "svc.pid").exists()
