"""`make cluster`'s launcher: Redis, three instances and nginx come up on
the given ports and chat works through nginx; one SIGINT (Ctrl-C) stops
all of it, clients get 1001, and no process is left."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import port_for
import trio

from ..helpers import connect

# Four processes start on a loaded machine, Python ones among them.
STARTUP = 60.0
# The instances' drain (SHUTDOWN_GRACE_SECONDS 10 s at most), then nginx and Redis.
SHUTDOWN = 30.0


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
        return [int(child) for child in children.read().split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ports() -> tuple[int, int, list[int]]:
    """Free ports: nginx's, Redis's and three instances'."""
    ports = set()
    while len(ports) < 5:
        ports.add(port_for.select_random())
    nginx_port, redis_port, *instance_ports = sorted(ports)
    return nginx_port, redis_port, instance_ports


async def _launch(
    tmp_path: Path, nginx_port: int, redis_port: int, instance_ports: list[int]
) -> trio.Process:
    arguments = {
        "--port": str(nginx_port),
        "--instance-ports": ",".join(map(str, instance_ports)),
        "--redis-port": str(redis_port),
        "--log-dir": str(tmp_path / "logs"),
    }
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "chat_service.devtools.cluster", *sum(arguments.items(), ())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_ctrl_c_stops_every_process_of_the_cluster(tmp_path: Path) -> None:
    nginx_port, redis_port, instance_ports = _ports()
    launcher = await _launch(tmp_path, nginx_port, redis_port, instance_ports)
    assert launcher.stdout is not None
    output = b""
    try:
        with trio.fail_after(STARTUP):
            async for chunk in launcher.stdout:
                output += chunk
                if b"cluster ready" in output:
                    break
        assert b"cluster ready" in output, output
        pids = [int(pid) for pid in re.findall(rb"pid=(\d+)", output)]
        assert len(pids) == 5  # redis, three instances, nginx
        pids += _children(pids[-1])  # nginx's worker
        assert len(pids) == 6
        async with (
            connect(f"ws://127.0.0.1:{nginx_port}/api/chat-api/ws/hall?user_id=a") as a,
            connect(f"ws://127.0.0.1:{nginx_port}/api/chat-api/ws/hall?user_id=b") as b,
        ):
            await a.send({"body": "through the cluster"})
            assert (await b.receive_type("chat"))["body"] == "through the cluster"
            launcher.send_signal(signal.SIGINT)
            assert await a.closed_code() == 1001
            assert await b.closed_code() == 1001
        with trio.fail_after(SHUTDOWN):
            assert await launcher.wait() == 0
        async for chunk in launcher.stdout:
            output += chunk
        assert output.rstrip().endswith(b"cluster stopped")
        assert [pid for pid in pids if _alive(pid)] == []
        logs = sorted(path.name for path in (tmp_path / "logs").iterdir() if path.is_file())
        names = [f"chat-{port}.log" for port in instance_ports]
        assert logs == sorted([*names, "nginx-access.log", "nginx.log", "redis.log"])
    finally:
        if launcher.poll() is None:
            launcher.kill()
            await launcher.wait()


async def test_a_process_that_cannot_start_stops_the_others(tmp_path: Path) -> None:
    nginx_port, redis_port, instance_ports = _ports()
    with socket.socket() as taken:  # nginx's port is in use: nginx exits at once
        taken.bind(("127.0.0.1", nginx_port))
        taken.listen()
        launcher = await _launch(tmp_path, nginx_port, redis_port, instance_ports)
        try:
            with trio.fail_after(STARTUP + SHUTDOWN):
                assert await launcher.wait() == 1
        finally:
            if launcher.poll() is None:
                launcher.kill()
                await launcher.wait()
    assert launcher.stdout is not None
    assert launcher.stderr is not None
    output = b"".join([chunk async for chunk in launcher.stdout])
    errors = b"".join([chunk async for chunk in launcher.stderr])
    assert b"cluster failed: nginx exited" in errors, errors
    pids = [int(pid) for pid in re.findall(rb"pid=(\d+)", output)]
    assert len(pids) == 5
    assert [pid for pid in pids if _alive(pid)] == []
