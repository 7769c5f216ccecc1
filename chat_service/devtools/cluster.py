"""`make cluster`: one Redis, three instances and nginx in front, all on
127.0.0.1, every log in one folder; Ctrl-C stops all of it.

    python -m chat_service.devtools.cluster [--port 8080] [--instance-ports 8081,8082,8083]
        [--redis-port 6380] [--log-dir cluster-logs]

Each process runs in a session of its own, so the terminal's Ctrl-C
reaches only this launcher, which stops them in order: the instances
first (SIGTERM: their drain closes clients with 1001), then nginx, then
Redis. A second Ctrl-C kills whatever is left at once. If any process
exits by itself, the others are stopped too and the launcher exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from .nginx import READY_LINE, nginx_command, write_config

__all__ = ["Child", "main", "run_cluster"]

# Longest a process may take to say it is ready: a Python instance starting
# on a loaded machine takes a few seconds.
STARTUP_TIMEOUT = 30.0
# Longest a process may take to stop after its signal: above the instances'
# default SHUTDOWN_GRACE_SECONDS (10 s), so a drain is never cut short.
STOP_TIMEOUT = 20.0


class ChildFailed(Exception):
    """A process of the cluster did not start, or exited by itself."""


@dataclass
class Child:
    """One process of the cluster, its output copied to `log` line by line."""

    name: str
    command: list[str]
    log: Path
    ready_line: str  # text in the output that says the process is ready
    env: dict[str, str] | None = None
    process: trio.Process | None = field(default=None, init=False)
    ready: bool = field(default=False, init=False)
    # Set once the process is ready or has exited, whichever comes first.
    settled: trio.Event = field(default_factory=trio.Event, init=False)
    stopping: bool = field(default=False, init=False)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def run(self) -> None:
        """Start the process, set `ready` once it logs its ready line, and
        return when it has exited after `stop`.

        Raises:
            ChildFailed: it exited before `stop` (before being ready, or later).
        Cancellation stops the process as `stop` does, and waits for it.
        """
        self.process = await trio.lowlevel.open_process(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            await self._copy_output()
            code = await self.process.wait()
            by_itself = not self.stopping
        finally:
            self.settled.set()
            with trio.CancelScope(shield=True):
                await self.stop()
        if by_itself:
            raise ChildFailed(f"{self.name} exited with code {code} (see {self.log})")

    async def _copy_output(self) -> None:
        """Copy the output to the log until the process closes it."""
        assert self.process is not None
        assert self.process.stdout is not None
        recent = b""  # enough of the output to find the ready line across chunks
        with self.log.open("ab") as log:
            async for chunk in self.process.stdout:
                log.write(chunk)
                log.flush()
                recent = (recent + chunk)[-4096:]
                if not self.ready and self.ready_line.encode() in recent:
                    self.ready = True
                    self.settled.set()

    def kill(self) -> None:
        """SIGKILL to the process and everything it started (its session's
        process group: nginx's workers outlive a killed master otherwise)."""
        self.stopping = True
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if the process has not exited within
        STOP_TIMEOUT; returns once it and whatever it started have exited."""
        self.stopping = True
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
        with trio.move_on_after(STOP_TIMEOUT):
            await self.process.wait()
        self.kill()
        await self.process.wait()


@dataclass(frozen=True)
class Ports:
    """Where the cluster listens, all on 127.0.0.1."""

    nginx: int
    instances: tuple[int, ...]
    redis: int


def plan(ports: Ports, log_dir: Path) -> tuple[Child, list[Child], Child]:
    """Redis, the instances and nginx, as the cluster runs them (nginx's
    configuration written under `log_dir`)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    redis = Child(
        "redis",
        [
            "redis-server",
            *("--port", str(ports.redis), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(log_dir), "--logfile", ""),
        ],
        log_dir / "redis.log",
        "Ready to accept connections",
    )
    settings = {
        "HOST": "127.0.0.1",
        "REDIS_URL": f"redis://127.0.0.1:{ports.redis}/0",
        "FORWARDED_ALLOW_IPS": "127.0.0.1",  # nginx, on this host
    }
    instances = [
        Child(
            f"chat-{port}",
            [sys.executable, "-m", "chat_service"],
            log_dir / f"chat-{port}.log",
            "ready listening=",
            env={**os.environ, **settings, "PORT": str(port)},
        )
        for port in ports.instances
    ]
    prefix = log_dir / "nginx"
    conf = write_config(
        prefix, ports.nginx, ports.instances, access_log=log_dir / "nginx-access.log"
    )
    nginx = Child("nginx", nginx_command(prefix, conf), log_dir / "nginx.log", READY_LINE)
    return redis, instances, nginx


async def run_cluster(ports: Ports, log_dir: Path) -> int:
    """Run the cluster until SIGINT or SIGTERM (0), or until one of its
    processes fails (1); either way every process has exited on return."""
    redis, instances, nginx = plan(ports, log_dir)
    everyone = (redis, *instances, nginx)
    failures: list[ChildFailed] = []
    stop_requested = trio.Event()
    startup = trio.CancelScope()

    def request_stop() -> None:
        stop_requested.set()
        startup.cancel()

    async def supervise(child: Child) -> None:
        try:
            await child.run()
        except ChildFailed as exc:
            failures.append(exc)
            request_stop()

    async def watch_signals(signals: AsyncIterator[int]) -> None:
        async for _ in signals:
            if stop_requested.is_set():  # the second Ctrl-C: no more waiting
                for child in everyone:
                    child.kill()
            request_stop()

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_signals, signals)
            with startup:
                for stage in ((redis,), instances, (nginx,)):  # the instances start side by side
                    for child in stage:
                        nursery.start_soon(supervise, child)
                    for child in stage:
                        await _wait_ready(child, failures, request_stop)
                print(
                    f"cluster ready: http://127.0.0.1:{ports.nginx} (instances on "
                    f"{','.join(map(str, ports.instances))}, Redis on {ports.redis}, "
                    f"logs in {log_dir}); Ctrl-C stops it",
                    flush=True,
                )
            await stop_requested.wait()
            async with trio.open_nursery() as draining:
                for instance in instances:
                    draining.start_soon(instance.stop)
            await nginx.stop()
            await redis.stop()
            nursery.cancel_scope.cancel()
    for exc in failures:
        print(f"cluster failed: {exc}", file=sys.stderr)
    print("cluster stopped", flush=True)
    return 1 if failures else 0


async def _wait_ready(
    child: Child, failures: list[ChildFailed], request_stop: Callable[[], None]
) -> None:
    with trio.move_on_after(STARTUP_TIMEOUT):
        await child.settled.wait()
    if child.ready:
        print(f"started {child.name} pid={child.pid} log={child.log}", flush=True)
        return
    print(f"failed to start {child.name} pid={child.pid} log={child.log}", flush=True)
    failures.append(ChildFailed(f"{child.name} is not ready (see {child.log})"))
    request_stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the cluster; the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="nginx's port")
    parser.add_argument("--instance-ports", default="8081,8082,8083")
    parser.add_argument("--redis-port", type=int, default=6380)
    parser.add_argument("--log-dir", type=Path, default=Path("cluster-logs"))
    args = parser.parse_args(argv)
    instance_ports = tuple(int(port) for port in args.instance_ports.split(","))
    ports = Ports(args.port, instance_ports, args.redis_port)
    return trio.run(run_cluster, ports, args.log_dir.resolve())


if __name__ == "__main__":
    sys.exit(main())
