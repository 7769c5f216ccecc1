"""Entry point: `python -m chat_service` or `chat-service`."""

from __future__ import annotations

import logging
import signal
import sys

import trio

from .config import Config, ConfigError
from .gc_tuning import tune_gc
from .server import serve

__all__ = ["main"]

log = logging.getLogger("chat_service")


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal received signal=%s", signal.Signals(signum).name)
            return


def main() -> int:
    """Load the configuration and serve until SIGTERM or SIGINT.

    Returns the process exit code: 0 after a clean stop, 2 for an invalid
    configuration (one line on stderr naming the variable).
    """
    try:
        config = Config.load()
    except ConfigError as exc:
        print(f"chat-service: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if config.log_level != "DEBUG":
        # coredis logs each lost connection at INFO (with an empty traceback);
        # the Redis broadcaster already logs an outage once, in our words.
        logging.getLogger("coredis").setLevel(logging.WARNING)
    log.info("starting host=%s port=%s redis=%s", config.host, config.port, bool(config.redis_url))
    tune_gc()
    trio.run(lambda: serve(config, shutdown_trigger=_wait_for_signal))
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
