"""chat_service as it runs in production: `python -m chat_service` in a
subprocess on a free port, watched through its log and /proc, for tests that
measure the process itself or signal it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from .helpers import WAIT, raw_request

_READY = re.compile(r"ready listening=http://[^ ,]+:(\d+)")

# Settings every test service gets: a free port, and INFO logs for the
# lifecycle lines the tests wait on.
BASE_ENV = {"HOST": "127.0.0.1", "PORT": "0", "LOG_LEVEL": "INFO"}


def service_command() -> list[str]:
    return [sys.executable, "-m", "chat_service"]


def service_env(settings: Mapping[str, str]) -> dict[str, str]:
    return {**os.environ, **BASE_ENV, **settings}


def ready_port(line: str) -> int | None:
    """The port in the service's "ready" log line, or None for any other line."""
    match = _READY.search(line)
    return int(match.group(1)) if match else None


class ServerProcess:
    """A running `python -m chat_service` and every line it has logged."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.port = 0
        self.log_lines: list[str] = []
        self._new_line = trio.Event()
        self._log_closed = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def url(self, room: str, **query: str) -> str:
        suffix = "".join(f"&{k}={v}" for k, v in query.items()).replace("&", "?", 1)
        return f"ws://127.0.0.1:{self.port}/api/chat-api/ws/{room}{suffix}"

    async def read_log(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Collect the service's stderr lines until it closes; started() on "ready"."""
        assert self.process.stderr is not None
        buffer = b""
        async for chunk in self.process.stderr:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                self.log_lines.append(line)
                if self.port == 0 and (port := ready_port(line)) is not None:
                    self.port = port
                    task_status.started()
            self._new_line.set()
            self._new_line = trio.Event()
        self._log_closed = True
        self._new_line.set()
        if self.port == 0:
            raise RuntimeError(
                "the service exited before it was ready:\n" + "\n".join(self.log_lines)
            )

    async def wait_for_line(self, pattern: str) -> str:
        """The first logged line matching `pattern` (waits for it)."""
        seen = 0
        with trio.fail_after(WAIT):
            while True:
                for line in self.log_lines[seen:]:
                    if re.search(pattern, line):
                        return line
                seen = len(self.log_lines)
                if self._log_closed:
                    raise AssertionError(f"no line matching {pattern!r}")
                await self._new_line.wait()

    def matching(self, pattern: str) -> list[str]:
        return [line for line in self.log_lines if re.search(pattern, line)]

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_bytes(self) -> int:
        """The process's resident set size now (VmRSS)."""
        return self._status_bytes("VmRSS")

    def peak_rss_bytes(self) -> int:
        """The largest resident set size the process has had (VmHWM)."""
        return self._status_bytes("VmHWM")

    def _status_bytes(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc status")

    async def settled(self, tasks: int, fds: int | None = None) -> dict[str, int]:
        """The service's task and fd counts once they are back to `tasks` (and
        at most `fds`, if given).

        Connections dropped with a reset are cleaned up by the service after our
        side is gone, and another process's counts have no event to wait on:
        this re-reads them until they settle or WAIT ends.
        """
        counts = {"tasks": -1, "fds": -1}
        with trio.move_on_after(WAIT):
            while True:
                counts = {"tasks": (await self.health())["tasks"], "fds": self.open_fds()}
                if counts["tasks"] == tasks and (fds is None or counts["fds"] <= fds):
                    break
                await trio.sleep(0.05)
        return counts

    def error_lines(self) -> list[str]:
        """Log lines at ERROR or CRITICAL, and tracebacks."""
        return [
            line
            for line in self.log_lines
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
        ]

    async def health(self) -> dict[str, Any]:
        status, _, body = await raw_request(self.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status == 200
        return dict(json.loads(body))

    async def wait_exit(self) -> int:
        """The exit code, once the process has ended."""
        return await self.process.wait()


@asynccontextmanager
async def server_process(**settings: str) -> AsyncIterator[ServerProcess]:
    """A service with `settings` in its environment, ready on a free port;
    stopped with SIGTERM (its drain) when the block ends, killed if that
    takes longer than WAIT."""
    process = await trio.lowlevel.open_process(
        service_command(), env=service_env(settings), stderr=subprocess.PIPE
    )
    server = ServerProcess(process)
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(WAIT):
                await nursery.start(server.read_log)
            yield server
            if server.alive():
                process.terminate()
                with trio.move_on_after(WAIT):
                    await process.wait()
    finally:
        if server.alive():
            process.kill()
        with trio.move_on_after(WAIT, shield=True):
            await process.wait()
