"""How one instance runs: the runtime tasks and Hypercorn's trio server in
one nursery, so that one cancellation reaches everything."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config as HypercornConfig
from quart_trio import QuartTrio

from .app import ChatRuntime, create_app
from .config import Config
from .transport import serve_http

__all__ = ["hypercorn_config", "serve"]

log = logging.getLogger(__name__)


# Largest request line plus headers we buffer before answering 431: browsers
# send a few KiB, and a bounded head caps what a slow client makes us hold.
MAX_REQUEST_HEAD_BYTES = 16 * 1024
# Pending connections the kernel queues for us: after another instance shuts
# down, its clients reconnect in one burst, and the default 100 drops some.
LISTEN_BACKLOG = 1024


def hypercorn_config(config: Config) -> HypercornConfig:
    """Hypercorn's settings for `config`: bind address, size limits, timeouts."""
    hyper = HypercornConfig()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hyper.bind = [f"{host}:{config.port}"]
    hyper.backlog = LISTEN_BACKLOG
    hyper.websocket_max_message_size = config.max_message_bytes
    hyper.h11_max_incomplete_size = MAX_REQUEST_HEAD_BYTES
    hyper.h2_max_header_list_size = MAX_REQUEST_HEAD_BYTES
    # Hypercorn's idle timer runs from accept (and between kept-alive
    # requests) until a complete request head arrives: the handshake timeout.
    hyper.keep_alive_timeout = config.handshake_timeout
    hyper.accesslog = None
    hyper.errorlog = logging.getLogger("hypercorn.error")
    return hyper


async def serve(
    config: Config,
    *,
    runtime: ChatRuntime | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] = trio.sleep_forever,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the chat service until `shutdown_trigger` returns.

    Reports `started(binds)` (e.g. ["http://127.0.0.1:8080"]) once the
    runtime tasks run and the socket listens. When serving stops, the
    runtime is cancelled, so nothing of the instance outlives this call. An
    exception from the hub or broadcaster ends serving and propagates.
    """
    runtime = runtime or ChatRuntime(config)
    app = create_app(runtime)
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        binds: list[str] = await nursery.start(
            _serve_http, app, hypercorn_config(config), shutdown_trigger, nursery.cancel_scope
        )
        log.info("ready listening=%s", ",".join(binds))
        task_status.started(binds)


async def _serve_http(
    app: QuartTrio,
    hyper: HypercornConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    runtime_scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve_http(app, hyper, shutdown_trigger, task_status=task_status)
    runtime_scope.cancel()
