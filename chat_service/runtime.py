"""The running service's long-lived parts (hub, broadcaster, handler,
capacity) and whether they are ready to serve."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from .api.auth import TokenVerifier
from .config import Config
from .metrics import Metrics
from .realtime import Broadcaster, Handler, HandlerConfig, Hub, LocalBroadcaster
from .realtime.capacity import Capacity
from .realtime.history import History, MemoryHistory
from .realtime.presence import Presence
from .realtime.redis_broadcaster import RedisBroadcaster
from .realtime.redis_cluster_broadcaster import RedisClusterBroadcaster
from .task_count import TaskCounter

__all__ = ["ChatRuntime", "make_broadcaster"]

log = logging.getLogger(__name__)


def make_broadcaster(config: Config, metrics: Metrics | None = None) -> tuple[Broadcaster, History]:
    """Redis fan-out and history when `REDIS_URL` (or `REDIS_CLUSTER_URL`)
    is set, else in-process ones; counting into `metrics` (default: a
    registry of their own)."""
    metrics = metrics or Metrics()
    kind = RedisClusterBroadcaster if config.redis_cluster_url else RedisBroadcaster
    url = config.redis_cluster_url or config.redis_url
    if url:
        redis = kind(
            url,
            channel_prefix=config.redis_channel_prefix,
            reconnect_min=config.redis_reconnect_min,
            reconnect_max=config.redis_reconnect_max,
            history_size=config.history_size,
            history_ttl=config.history_ttl,
            metrics=metrics,
        )
        return redis, redis.history
    memory = MemoryHistory(size=config.history_size, ttl=config.history_ttl)
    return LocalBroadcaster(memory, metrics=metrics), memory


class ChatRuntime:
    """The hub, the broadcaster, the handler, the capacity and the metrics
    of one instance, and whether they are ready to serve.

    `make_handler_config` builds the HandlerConfig (hooks) around the
    runtime's broadcaster; the default has the logging hooks.
    """

    def __init__(
        self,
        config: Config,
        *,
        make_handler_config: Callable[[Broadcaster], HandlerConfig] | None = None,
    ) -> None:
        self.config = config
        self.metrics = Metrics()
        # Where METRICS_PORT's listener listens, once it does (else empty).
        self.metrics_binds: list[str] = []
        self.broadcaster, self.history = make_broadcaster(config, self.metrics)
        store = (
            self.broadcaster.open_presence(config.presence_ttl)
            if isinstance(self.broadcaster, RedisBroadcaster)
            else None
        )
        self.presence = Presence(
            interval=config.presence_interval, list_max=config.presence_list_max, store=store
        )
        self.hub = Hub(
            self.broadcaster,
            self.history,
            heartbeat_interval=config.heartbeat_interval,
            batch_window=config.batch_window,
            presence=self.presence,
            metrics=self.metrics,
        )
        self.capacity = Capacity(
            max_connections=config.max_connections,
            max_per_user=config.max_connections_per_user,
            max_per_ip=config.max_connections_per_ip,
        )
        if make_handler_config is None:
            handler_config = HandlerConfig(self.broadcaster, auth_required=config.auth_enabled)
        else:
            handler_config = make_handler_config(self.broadcaster)
        self.handler_config = handler_config
        # Checks every token (upgrades, refreshes, HTTP requests); None: auth off.
        self.verifier = TokenVerifier(config) if handler_config.auth_required else None
        self.handler = Handler(
            self.hub,
            handler_config,
            config,
            self.metrics,
            verify_token=None if self.verifier is None else self.verifier.verify,
        )
        self.draining = False
        self.tasks = TaskCounter()
        self._started = False

    def unready_reason(self) -> str | None:
        """Why this instance should get no new clients now, or None if ready."""
        if not self._started:
            return "starting"
        if self.draining:
            return "draining"
        return self.broadcaster.unready_reason

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the broadcaster, the hub and presence diffs until cancelled.

        Reports `started()` once both have started; while it runs, `tasks`
        counts the process's live tasks. An exception in either
        ends this task (and with it the service): they are never restarted
        half-alive. Cancellation stops both and closes their connections.
        """
        trio.lowlevel.add_instrument(self.tasks)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.broadcaster.run, self.hub.deliver, self.hub.epoch_seen)
                await nursery.start(self.hub.run)
                offer = self.hub.offer if self.config.presence_events else None
                await nursery.start(self.presence.run, offer)
                self._started = True
                task_status.started()
        finally:
            self._started = False
            trio.lowlevel.remove_instrument(self.tasks)
