"""The long-running local processes the project starts (Kafka nodes, the Spark master and
workers): each detached from the shell that started it, with a pid file and a log file, and
the `up | down | status` command line they share."""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


def port_is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


# Listening ports are picked below the kernel's ephemeral range: a port from that range (what
# binding port 0 returns) may be handed to any outgoing connection between the pick and the
# server's bind, e.g. a Kafka node's own reconnects to a controller not yet up (a CI run lost a
# 3-node cluster's start-up that way).
LISTEN_PORTS = range(20000, 32768)


def ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(offsets: Sequence[int] = (0,)) -> int:
    """A port p on 127.0.0.1 such that p + o is free for each of `offsets` (a node's group of
    ports), outside the ephemeral range (see LISTEN_PORTS); random, so that concurrent test
    workers rarely meet."""
    top = min(LISTEN_PORTS.stop, ephemeral_floor()) - max(offsets)
    for _ in range(200):
        first = random.randrange(LISTEN_PORTS.start, top)
        if all(port_is_free(first + o) for o in offsets):
            return first
    raise RuntimeError(f"no free port in {LISTEN_PORTS} on 127.0.0.1")


def pid_alive(pid: int) -> bool:
    try:
        # Reap it if it is our own exited child: a zombie still answers kill(pid, 0).
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child: started by an earlier `up`
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class ManagedProcess:
    """One process started in its own session (it survives the shell that started it); signals
    go to its whole process group, so that children it spawned (a Spark worker's executors) go
    with it."""

    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def launch(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        """Starts `command` unless this process already runs; its output goes through a pipe to
        `service_log`, which appends it to the log file and bounds the file's size."""
        if self.pid() is not None:
            return
        read_end, write_end = os.pipe()
        try:
            with self.log_file.open("ab") as errors:  # the log writer's own, should it fail
                subprocess.Popen(
                    [sys.executable, "-m", "shopstream.devstack.service_log", str(self.log_file)],
                    stdin=read_end, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True,
                )  # fmt: skip
            process = subprocess.Popen(
                list(command), env=env, stdout=write_end, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(read_end)
            os.close(write_end)
        self.pid_file.write_text(str(process.pid))

    def wait_until(self, ready: Callable[[], bool], failure: Callable[[str], Exception], what: str,
                   timeout: float, poll_seconds: float = 0.3) -> None:  # fmt: skip
        """Returns once `ready()`; raises `failure("<what> did not start; its log …")` with the log's
        tail if the process exits first or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.pid() is None or time.monotonic() > deadline:
                tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
                raise failure(f"{what} did not start; its log {self.log_file}:\n{tail}")
            time.sleep(poll_seconds)

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after `timeout`. Returns whether it ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL, as a crash would (for the drills); returns once it is gone."""
        pid = self.pid()
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.05)


def stop_at_once(stops: Sequence[Callable[[], bool]]) -> bool:
    """Runs every stop at the same time (each SIGTERMs one process and waits for it); returns
    whether any of them had a process running. For the processes of one stack: stopped one after
    the other, a later one may wait for an earlier one that is gone (a Kafka node for its quorum)."""
    with ThreadPoolExecutor(max_workers=max(1, len(stops))) as pool:
        return any(list(pool.map(lambda stop: stop(), stops)))


class Service(Protocol):
    """What `service_main` drives."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> bool: ...

    def describe(self) -> str: ...

    def running(self) -> bool: ...


def service_main(
    description: str,
    make: Callable[[], Service],
    errors: tuple[type[Exception], ...],
    argv: Sequence[str] | None,
) -> int:
    """`up` (idempotent, waits until ready), `down` and `status` (exit 3 when not fully up)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        service = make()
        if args.action == "up":
            started = time.monotonic()
            service.start()
            print(f"{service.name} ready ({time.monotonic() - started:.1f} s): {service.describe()}")
        elif args.action == "down":
            print(f"{service.name} stopped" if service.stop() else f"no {service.name} was running")
        else:
            running = service.running()
            print(f"{service.name} {'running' if running else 'not (fully) running'}: {service.describe()}")
            return 0 if running else 3
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
