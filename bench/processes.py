"""The processes of a benchmark run: servers, redis-server and the load
generator, each pinned to its core, and what /proc says about them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "BENCH_DIR",
    "REPO_DIR",
    "Cores",
    "Server",
    "cpu_seconds",
    "free_port",
    "raise_fd_limit",
    "rss_kib",
    "starlette_command",
    "start_redis",
    "start_server",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
# Long enough for a cold start of Python and Quart on a busy machine.
START_TIMEOUT = 30.0
# A stopped server has no clients left (the load generator has exited), so
# its drain ends at once; past this it is killed.
STOP_TIMEOUT = 15.0


class Cores:
    """Which core the servers and which the load generator run on.

    With two or more cores the servers share the first and the load
    generator gets the second, so neither steals the other's CPU; with one
    core nothing is pinned (the figures then mean little, and say so).
    """

    def __init__(self) -> None:
        available = sorted(os.sched_getaffinity(0))
        self.pinned = len(available) >= 2 and shutil.which("taskset") is not None
        self.server = str(available[0])
        self.loadgen = str(available[1]) if self.pinned else self.server

    def server_prefix(self) -> list[str]:
        """The command prefix that pins a server process."""
        return ["taskset", "-c", self.server] if self.pinned else []

    def loadgen_prefix(self) -> list[str]:
        """The command prefix that pins the load generator (and redis-server)."""
        return ["taskset", "-c", self.loadgen] if self.pinned else []


def raise_fd_limit() -> int:
    """Raise this process's open-file limit (and so its children's) to the hard limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: utime and stime are fields 14 and 15 of stat(5).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of `pid`, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Server:
    """A server process listening on 127.0.0.1:`port`; its stderr goes to `log`."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/chat-api/ws"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_listening(self) -> None:
        """Return once the port accepts connections; raise if the process exits first."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode} before listening:\n"
                    + self.log_text()[-2000:]
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not listening after {START_TIMEOUT}s")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def _listening(
    command: list[str], env: dict[str, str] | None, port: int, log: Path
) -> Iterator[Server]:
    """Run `command`, which listens on `port`, until the block ends; its output goes to `log`."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=REPO_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    server = Server(process, port, log)
    try:
        server.wait_listening()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def start_server(
    command: list[str], env: dict[str, str], log: Path, cores: Cores
) -> Iterator[Server]:
    """Run `command` (it listens on $PORT) pinned to the server core, until the block ends."""
    port = free_port()
    env = {**os.environ, **env, "PORT": str(port), "HOST": "127.0.0.1"}
    with _listening(cores.server_prefix() + command, env, port, log) as server:
        yield server


def ours_command(source_tree: Path | None = None) -> list[str]:
    """How to run chat_service (from `source_tree` instead of this one, if given)."""
    if source_tree is None:
        return [sys.executable, "-m", "chat_service"]
    # -P: the working directory (this tree) is not put before PYTHONPATH.
    return [
        "env",
        f"PYTHONPATH={source_tree.resolve()}",
        sys.executable,
        "-P",
        "-m",
        "chat_service",
    ]


def baseline_command() -> list[str]:
    """How to run the bare-stack baseline."""
    return [sys.executable, str(BENCH_DIR / "baseline_server.py")]


# The Starlette reference server's own virtualenv (`make bench-deps` makes it).
STARLETTE_PYTHON = BENCH_DIR / ".venv-starlette" / "bin" / "python"


def starlette_command() -> list[str]:
    """How to run the Starlette + uvicorn + broadcaster reference server."""
    if not STARLETTE_PYTHON.exists():
        raise RuntimeError(f"{STARLETTE_PYTHON} is missing (make bench-deps makes it)")
    return [str(STARLETTE_PYTHON), str(BENCH_DIR / "starlette_server.py")]


@contextlib.contextmanager
def start_redis(log: Path, cores: Cores, *, on_server_core: bool = False) -> Iterator[str]:
    """A throwaway redis-server (no persistence) on a free port, pinned to
    the load generator's core (or the servers'); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make redis-server installs it)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no"]
    prefix = cores.server_prefix() if on_server_core else cores.loadgen_prefix()
    with _listening(prefix + command, None, port, log):
        yield f"redis://127.0.0.1:{port}"
