"""A managed process's log, bounded in size: the process writes into a pipe; this reads it line by
line and appends to the log file, rolling it over at `SHOPSTREAM_SERVICE_LOG_MAX_MB` (default 20)
into `<log>.1` ... `<log>.4`, the oldest dropped. A service that runs for a year keeps its last
≈ 100 MB of output, not all of it (the live aggregation logs a line per 5-second batch, ≈ 2.5 MB a
day; the broker logs at INFO).

    <command> 2>&1 | python -m shopstream.devstack.service_log <log file>

`processes.ManagedProcess.launch` starts it in a session of its own: the SIGTERM that `down` sends
the service's process group does not end it before the service's last lines; it ends when every
writer of the pipe has closed it (the service and any children it spawned). So after a quick
restart two writers may append to the same log for a moment (the old one still draining): each line
is written under a lock on the log, into the file now at its path (`SharedRotatingFileHandler`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

BACKUPS = 4
DEFAULT_MAX_MB = 20


def max_bytes() -> int:
    """`SHOPSTREAM_SERVICE_LOG_MAX_MB` (may be a fraction), else DEFAULT_MAX_MB, in bytes."""
    return int(float(os.environ.get("SHOPSTREAM_SERVICE_LOG_MAX_MB", DEFAULT_MAX_MB)) * 1024 * 1024)


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that other writers of the same file may share: each record is written
    under an exclusive lock (`.<log>.lock` beside it), into the file at the path now (another writer
    may have rolled it over since: this one's open file is a backup then), and rolled over by
    whichever writer finds it full."""

    def __init__(self, filename: Path, **options) -> None:
        super().__init__(filename, **options)
        self._lock_file = open(Path(self.baseFilename).with_name(f".{Path(filename).name}.lock"), "a")  # noqa: SIM115

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _follow_path(self) -> None:
        if self.stream is None:
            return
        mine = os.fstat(self.stream.fileno())
        try:
            on_disk = os.stat(self.baseFilename)
        except FileNotFoundError:
            on_disk = None
        if on_disk is None or (on_disk.st_dev, on_disk.st_ino) != (mine.st_dev, mine.st_ino):
            self.stream.close()
            self.stream = self._open()

    def emit(self, record: logging.LogRecord) -> None:
        with self._exclusive():
            self._follow_path()
            super().emit(record)

    def close(self) -> None:
        super().close()
        self._lock_file.close()


def rotating_file(log_file: Path) -> logging.Handler:
    """Appends to `log_file` as it is; rolls it over before a line would take it past max_bytes."""
    handler = SharedRotatingFileHandler(log_file, maxBytes=max_bytes(), backupCount=BACKUPS)
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
