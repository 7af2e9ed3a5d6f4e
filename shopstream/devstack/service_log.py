"""A managed process's log, bounded in size: the process writes into a pipe; this reads it line by
line and appends to the log file, rolling it over at `SHOPSTREAM_SERVICE_LOG_MAX_MB` (default 20)
into `<log>.1` ... `<log>.4`, the oldest dropped. A service that runs for a year keeps its last
≈ 100 MB of output, not all of it (the live aggregation logs a line per 5-second batch, ≈ 2.5 MB a
day; the broker logs at INFO).

    <command> 2>&1 | python -m shopstream.devstack.service_log <log file>

`processes.ManagedProcess.launch` starts it in a session of its own: the SIGTERM that `down` sends
the service's process group does not end it before the service's last lines; it ends when every
writer of the pipe has closed it (the service and any children it spawned).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable
from pathlib import Path

BACKUPS = 4
DEFAULT_MAX_MB = 20


def max_bytes() -> int:
    """`SHOPSTREAM_SERVICE_LOG_MAX_MB` (may be a fraction), else DEFAULT_MAX_MB, in bytes."""
    return int(float(os.environ.get("SHOPSTREAM_SERVICE_LOG_MAX_MB", DEFAULT_MAX_MB)) * 1024 * 1024)


def rotating_file(log_file: Path) -> logging.Handler:
    """Appends to `log_file` as it is; rolls it over before a line would take it past max_bytes."""
    handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes(), backupCount=BACKUPS)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.terminator = ""  # each line keeps its own newline
    return handler


def copy_lines(lines: Iterable[bytes], handler: logging.Handler) -> None:
    """Every line (bytes, as the process wrote them) into `handler`, flushed one by one: a reader of
    the log (a failed start's tail) sees what the process wrote up to now."""
    for line in lines:
        handler.emit(logging.makeLogRecord({"msg": line.decode(errors="replace")}))


def main(argv: list[str] | None = None) -> int:
    (log_file,) = argv if argv is not None else sys.argv[1:]
    handler = rotating_file(Path(log_file))
    try:
        copy_lines(sys.stdin.buffer, handler)
    finally:
        handler.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
