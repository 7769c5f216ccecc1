"""chat_service as a real process (`python -m chat_service`), for tests that
measure the process itself (its memory) or need it apart from the test's own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import trio

from .helpers import WAIT

_READY = re.compile(r"ready listening=http://127\.0\.0\.1:(\d+)")


@dataclass
class ServerProcess:
    """A running `python -m chat_service` and what it logged so far."""

    pid: int
    port: int
    log_lines: list[str] = field(default_factory=list)

    def rss_bytes(self) -> int:
        """The process's resident set size now (VmRSS)."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def error_lines(self) -> list[str]:
        """Log lines at ERROR or CRITICAL, and tracebacks."""
        return [
            line
            for line in self.log_lines
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
        ]


@asynccontextmanager
async def server_process(**settings: str) -> AsyncIterator[ServerProcess]:
    """Run chat_service on a free port with `settings` as environment
    variables; stopped with SIGTERM (its drain) when the block ends."""
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": "0", "LOG_LEVEL": "INFO", **settings}
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                [sys.executable, "-m", "chat_service"],
                stderr=subprocess.PIPE,
                env=env,
                check=False,
            )
        )
        assert process.stderr is not None
        ready, ready_port = trio.open_memory_channel[int](1)
        lines: list[str] = []

        async def read_log(stream: trio.abc.ReceiveStream) -> None:
            pending = b""
            async for chunk in stream:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    line = raw.decode(errors="replace")
                    lines.append(line)
                    if match := _READY.search(line):
                        ready.send_nowait(int(match.group(1)))

        nursery.start_soon(read_log, process.stderr)
        with trio.fail_after(WAIT):
            port = await ready_port.receive()
        try:
            yield ServerProcess(process.pid, port, lines)
        finally:
            process.terminate()
            with trio.move_on_after(WAIT):
                await process.wait()
            if process.returncode is None:
                nursery.cancel_scope.cancel()  # run_process kills it
            # else the log reader ends at EOF, with every line read
