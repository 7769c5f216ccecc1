"""`python -m chat_service` for the browser tests, which are synchronous
(Playwright's sync API runs an event loop of its own): started, waited for
until ready, stopped with SIGTERM, from plain threads."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..server_process import ready_port, service_command, service_env

# A Python instance starting on a machine busy with other tests.
STARTUP = 30.0
STOP = 20.0


class LiveService:
    """A running instance and the lines it has logged."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            service_command(), env=service_env(settings), stderr=subprocess.PIPE, text=True
        )
        self.port = 0
        self.log_lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._ready.wait(STARTUP) or self.port == 0:
            self.process.kill()
            raise RuntimeError("the service did not start:\n" + "\n".join(self.log_lines))

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log_lines.append(line.rstrip("\n"))
            if self.port == 0 and (port := ready_port(line)) is not None:
                self.port = port
                self._ready.set()
        self._ready.set()  # exited: the waiter sees port 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """SIGTERM (the drain: clients get 1001), then the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(STOP)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._reader.join(STOP)
            assert self.process.stderr is not None
            self.process.stderr.close()


@contextmanager
def live_service(**settings: str) -> Iterator[LiveService]:
    """An instance with `settings` in its environment for the block."""
    service = LiveService(settings)
    try:
        yield service
    finally:
        service.stop()
