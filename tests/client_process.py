"""The terminal client as people run it: `python -m chat_service.client` in a
subprocess, driven through its stdin, watched through stdout and stderr."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .helpers import WAIT


class _Lines:
    """Every line a stream has produced, and a way to wait for one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = trio.Event()

    async def collect(self, stream: trio.abc.ReceiveStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            self.lines += [line.decode() for line in lines]
            self._changed.set()
            self._changed = trio.Event()
        self.closed = True
        self._changed.set()

    async def wait_for(self, pattern: str, count: int = 1) -> list[str]:
        """The first `count` lines matching `pattern`, once there are that many."""
        with trio.fail_after(WAIT):
            while True:
                found = [line for line in self.lines if re.search(pattern, line)]
                if len(found) >= count:
                    return found[:count]
                if self.closed:
                    raise AssertionError(f"no {count} lines matching {pattern!r}: {self.lines}")
                await self._changed.wait()


class ClientProcess:
    """A running chat client: its stdin, and the lines of its stdout and stderr."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.out = _Lines()
        self.err = _Lines()

    async def say(self, *lines: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all("".join(f"{line}\n" for line in lines).encode())

    async def end_input(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.aclose()

    async def wait_exit(self) -> int:
        with trio.fail_after(WAIT):
            return await self.process.wait()

    def frames(self) -> list[dict[str, Any]]:
        """The chat frames printed so far (with --json)."""
        return [json.loads(line) for line in self.out.lines]

    async def wait_for_bodies(self, *bodies: str) -> list[dict[str, Any]]:
        """The frames printed (with --json) once each of `bodies` has been."""
        for body in bodies:
            await self.out.wait_for(re.escape(json.dumps(body)))
        return self.frames()


def client_command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "chat_service.client", url, *args]


@asynccontextmanager
async def client_process(url: str, *args: str) -> AsyncIterator[ClientProcess]:
    """`chat-client url *args` running for the block; killed if still running at its end."""
    process = await trio.lowlevel.open_process(
        client_command(url, *args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    client = ClientProcess(process)
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.out.collect, process.stdout)
            nursery.start_soon(client.err.collect, process.stderr)
            yield client
            if process.poll() is None:
                process.kill()
    finally:
        if process.poll() is None:
            process.kill()
        with trio.move_on_after(WAIT, shield=True):
            await process.wait()
