"""How one instance runs: the runtime tasks and Hypercorn's trio server in
one nursery, so that one cancellation reaches everything, and the drain
that takes it out of service."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from quart_trio import QuartTrio

from .app import create_app
from .config import Config
from .gc_tuning import BurstPause
from .hypercorn_serving import ServingConfig, serve_http
from .metrics_listener import metrics_app
from .realtime.close_codes import CloseCode
from .realtime.handler import CLOSE_TIMEOUT
from .runtime import ChatRuntime

__all__ = ["DrainReport", "drain", "hypercorn_config", "serve"]

log = logging.getLogger(__name__)


# Largest request line plus headers we buffer before answering 431: browsers
# send a few KiB, and a bounded head caps what a slow client makes us hold.
MAX_REQUEST_HEAD_BYTES = 16 * 1024
# Pending connections the kernel queues for us: after another instance shuts
# down, its clients reconnect in one burst. A full queue drops the SYN or the
# handshake's last ACK, and the client waits for its retries (1 s, 3 s, 7 s):
# 1024 overflowed with 5,000 clients at once. Linux caps it at somaxconn
# (4096 by default since 5.4).
LISTEN_BACKLOG = 4096
GOING_AWAY_REASON = "server shutting down: reconnect"


def hypercorn_config(config: Config, port: int | None = None) -> ServingConfig:
    """Hypercorn's settings for `config`: bind address (`port`, default
    PORT), size limits, timeouts, compression, the kernel's bounds on dead peers."""
    hyper = ServingConfig()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hyper.bind = [f"{host}:{config.port if port is None else port}"]
    hyper.backlog = LISTEN_BACKLOG
    hyper.websocket_max_message_size = config.max_message_bytes
    hyper.h11_max_incomplete_size = MAX_REQUEST_HEAD_BYTES
    hyper.h2_max_header_list_size = MAX_REQUEST_HEAD_BYTES
    # Hypercorn's idle timer runs from accept (and between kept-alive
    # requests) until a complete request head arrives: the handshake timeout.
    hyper.keep_alive_timeout = config.handshake_timeout
    # The last part of the grace period, after our drain: what is left then
    # (an HTTP request in flight, a client that stopped reading) is ended.
    hyper.graceful_timeout = _closing_allowance(config.shutdown_grace_seconds)
    hyper.websocket_compression = config.ws_compression
    hyper.tcp_user_timeout = config.tcp_user_timeout
    hyper.tcp_keepalive_idle = config.tcp_keepalive_idle
    # HTTP/1.1 only, also under TLS: HTTP/2 is not served (README "Limits").
    hyper.alpn_protocols = ["http/1.1"]
    hyper.accesslog = None
    hyper.errorlog = logging.getLogger("hypercorn.error")
    return hyper


def _closing_allowance(grace: float) -> float:
    """How long each of the drain's last two steps gets: closing clients
    whose queues were not sent in time, then Hypercorn ending what is left.
    As long as a close frame gets (CLOSE_TIMEOUT), and most of a short
    grace period for the graceful part."""
    return min(CLOSE_TIMEOUT, grace / 4)


@dataclass
class DrainReport:
    """What a drain did: clients when it began, clients closed without
    their queue sent (the grace ran out), and how long it took."""

    clients: int = 0
    forced: int = 0
    seconds: float = 0.0


async def drain(runtime: ChatRuntime, grace: float) -> DrainReport:
    """Take the instance out of service without losing what it accepted.

    In order: /readyz and new upgrades answer 503; no more frames are taken
    from clients; every message already taken is handed to its room
    (`broadcaster.flush`); every client's send queue is sent, then it is
    closed with 1001. Clients still open when the graceful part of `grace`
    ends are closed with 1001 at once, their queues dropped; Hypercorn gets
    the end of `grace` for what is left (see `hypercorn_config`).
    Cancellation stops the drain where it is.
    """
    allowance = _closing_allowance(grace)
    started = trio.current_time()
    hub = runtime.hub
    runtime.draining = True
    report = DrainReport(clients=hub.connection_count())
    log.info("draining clients=%d grace_seconds=%g", report.clients, grace)
    with trio.move_on_at(started + grace - 2 * allowance):
        hub.stop_receiving()
        await hub.wait_frames_handled()
        await runtime.broadcaster.flush()
        hub.finish_all(CloseCode.GOING_AWAY, GOING_AWAY_REASON)
        await hub.wait_empty()
    if hub.connection_count():
        report.forced = hub.connection_count()
        hub.close_all(CloseCode.GOING_AWAY, GOING_AWAY_REASON)
        with trio.move_on_at(started + grace - allowance):
            await hub.wait_empty()
    report.seconds = trio.current_time() - started
    runtime.metrics.drain_seconds.set(report.seconds)
    return report


async def serve(
    config: Config,
    *,
    runtime: ChatRuntime | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] = trio.sleep_forever,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the chat service until `shutdown_trigger` returns, then drain.

    Reports `started(binds)` (e.g. ["http://127.0.0.1:8080"]) once the
    runtime tasks run and the socket listens (and, with METRICS_PORT, the
    metrics listener too: its binds are `runtime.metrics_binds`). When the trigger returns,
    `drain` closes every client (within `SHUTDOWN_GRACE_SECONDS`) while the
    server still answers (503), then Hypercorn stops and the runtime is
    cancelled, so nothing of the instance outlives this call. While clients
    arrive in a burst, automatic garbage collection pauses (`BurstPause`;
    resumed when serving ends). An exception
    from the hub or broadcaster ends serving and propagates. Cancellation
    stops everything at once, without a drain.
    """
    runtime = runtime or ChatRuntime(config)
    app = create_app(runtime)
    reports: list[DrainReport] = []

    async def drain_on_trigger() -> None:
        await shutdown_trigger()
        reports.append(await drain(runtime, config.shutdown_grace_seconds))

    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        if config.metrics_port is not None:
            runtime.metrics_binds = await nursery.start(
                serve_http,
                metrics_app(runtime.metrics),
                hypercorn_config(config, config.metrics_port),
                trio.sleep_forever,
            )
            log.info("metrics listening=%s", ",".join(runtime.metrics_binds))
        gc_pause = BurstPause()
        await nursery.start(gc_pause.run)
        hyper = hypercorn_config(config)
        hyper.on_connection = gc_pause.arrived
        binds: list[str] = await nursery.start(
            _serve_http, app, hyper, drain_on_trigger, nursery.cancel_scope
        )
        log.info("ready listening=%s", ",".join(binds))
        task_status.started(binds)
    for report in reports:
        log.info(
            "closed clients=%d forced=%d drain_seconds=%.3f",
            report.clients,
            report.forced,
            report.seconds,
        )


async def _serve_http(
    app: QuartTrio,
    hyper: ServingConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    runtime_scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve_http(app, hyper, shutdown_trigger, task_status=task_status)
    runtime_scope.cancel()
