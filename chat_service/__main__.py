"""Entry point: `python -m chat_service` or `chat-service`."""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator

import trio

from .config import Config, ConfigError
from .failures import summarize
from .gc_tuning import tune_gc
from .logs import configure_logging
from .runtime import ChatRuntime
from .server import serve

__all__ = ["main", "run"]

log = logging.getLogger("chat_service")

# Exit codes besides 0 (clean stop): 1 when a long-lived task failed, 2 for
# a bad configuration, 128 + the signal number when a second signal cut the
# drain short (what a shell reports for a process killed by that signal).
EXIT_FAILURE = 1
EXIT_CONFIG = 2
_SIGNAL_EXIT_BASE = 128
# Descriptors besides the clients' sockets: the listening socket, Redis
# connections, stdio, and sockets of clients being accepted or closed.
FD_HEADROOM = 100


async def _watch_signals(signals: AsyncIterator[int], first: trio.Event) -> None:
    """Set `first` on the first SIGTERM/SIGINT; exit the process at once on
    the second. Runs until cancelled."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if not first.is_set():
            log.info("signal received signal=%s", name)
            first.set()
            continue
        log.warning("second signal received signal=%s: exiting now, drain not finished", name)
        logging.shutdown()
        # Skips everything still running, as asked: nothing may delay this
        # exit (Hypercorn's socket writes are shielded from cancellation).
        os._exit(_SIGNAL_EXIT_BASE + signum)


async def _serve_until_signalled(config: Config, runtime: ChatRuntime | None) -> None:
    first = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, first)
            await serve(config, runtime=runtime, shutdown_trigger=first.wait)
            nursery.cancel_scope.cancel()


def run(config: Config, runtime: ChatRuntime | None = None) -> int:
    """Serve `config` until SIGTERM or SIGINT has drained the instance.

    Returns the exit code: 0 after a clean stop, 1 if the hub or the
    broadcaster failed (logged as one line; the traceback at DEBUG).
    """
    try:
        trio.run(_serve_until_signalled, config, runtime)
    except Exception as exc:
        log.critical("stopped by a failure: %s", summarize(exc))
        log.debug("the failure in full", exc_info=exc)
        return EXIT_FAILURE
    return 0


def warn_if_few_file_descriptors(max_connections: int) -> None:
    """Log one warning if the process may open fewer files than
    MAX_CONNECTIONS clients need (one socket each, plus FD_HEADROOM)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "file descriptor limit %d is below MAX_CONNECTIONS + %d = %d: raise it"
            " (systemd LimitNOFILE, ulimit -n): no client is accepted while it is reached",
            soft,
            FD_HEADROOM,
            needed,
        )


def main() -> int:
    """Load the configuration and serve until SIGTERM or SIGINT.

    Returns the process exit code (see `run`); 2 for an invalid
    configuration (one line on stderr naming the variable).
    """
    try:
        config = Config.load()
    except ConfigError as exc:
        print(f"chat-service: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log_level, config.log_format)
    if config.log_level != "DEBUG":
        # coredis logs each lost connection at INFO (with an empty traceback);
        # the Redis broadcaster already logs an outage once, in our words.
        logging.getLogger("coredis").setLevel(logging.WARNING)
    log.info("starting host=%s port=%s redis=%s", config.host, config.port, bool(config.redis_url))
    warn_if_few_file_descriptors(config.max_connections)
    tune_gc()
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
