"""The instance's Prometheus metrics: one registry per runtime, so several
servers in one process (the tests) count apart.

Label values come from small fixed sets (refusal reasons, close codes, error
codes): never a room, user or client, whose number has no bound. Counting
is per event or per fan-out, never per recipient, so the hot path pays a
few increments per message whatever the room's size.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "PEER_CLOSED", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of `Metrics.render()`: Prometheus' classic text format,
which every Prometheus reads (our names are ASCII, so `generate_latest`'s
output is that format whatever prometheus-client calls its latest)."""

PEER_CLOSED = "peer"
"""The `code` label of a connection the client ended (closed or vanished)."""

# Seconds: a local fan-out takes microseconds, one through Redis about a
# millisecond, a loaded instance tens of milliseconds; a second is an outage.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Payloads in one pipelined batch: 1 when idle, up to the queue (1024) when Redis lags.
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Rooms on one socket: most clients sit in one or a few, at most MAX_ROOMS_PER_CONNECTION.
_ROOMS_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100)


class Metrics:
    """Every metric of one instance, in its own registry.

    Counters and histograms are attributes, incremented where the event
    happens; gauges of state the runtime already keeps (connections open,
    rooms, Redis connected) are read at scrape time through `watch_*`.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.connections_open = Gauge(
            "chat_connections_open", "WebSocket clients connected now", registry=registry
        )
        self.connections_accepted = self._counter(
            "chat_connections_accepted", "WebSocket upgrades accepted"
        )
        self.connections_refused = self._counter(
            "chat_connections_refused",
            "WebSocket upgrades refused before the upgrade, by the error answered",
            ("reason",),
        )
        self.connections_closed = self._counter(
            "chat_connections_closed",
            "WebSocket connections ended, by the close code the server sent (peer: the client)",
            ("code",),
        )
        self.rooms_local = Gauge(
            "chat_rooms_local", "Rooms with at least one client on this instance", registry=registry
        )
        self.room_subscriptions = self._histogram(
            "chat_room_subscriptions_per_connection",
            "Rooms a connection was subscribed to when it ended",
            buckets=_ROOMS_BUCKETS,
        )
        self.messages_received = self._counter(
            "chat_messages_received", "Chat messages received from this instance's clients"
        )
        self.messages_published = self._counter(
            "chat_messages_published",
            "Chat messages published to their room (through Redis, or locally while it is down)",
        )
        self.messages_delivered = self._counter(
            "chat_messages_delivered",
            "Chat messages queued to this instance's clients (one per recipient)",
        )
        self.messages_replayed = self._counter(
            "chat_messages_replayed", "Chat messages sent to recovering clients from history"
        )
        self.messages_dropped = self._counter(
            "chat_messages_dropped",
            "Chat messages received and not published, by reason",
            ("reason",),
        )
        self.slow_consumer_disconnects = self._counter(
            "chat_slow_consumer_disconnects",
            "Clients closed with 4001: their send queue overflowed",
        )
        self.heartbeat_timeouts = self._counter(
            "chat_heartbeat_timeouts",
            "Clients closed with 4000: nothing received within the heartbeat deadline",
        )
        self.rate_limit_refusals = self._counter(
            "chat_rate_limit_refusals",
            "Client frames refused by the rate limit (error rate_limited)",
        )
        self.frame_errors = self._counter(
            "chat_frame_errors", "Error frames sent to clients, by error code", ("code",)
        )
        self.presence_diffs_sent = self._counter(
            "chat_presence_diffs_sent",
            "presence_diff frames queued to clients (one whose queue is full misses it)",
        )
        self.redis_reconnects = self._counter(
            "chat_redis_reconnects", "Sessions with Redis established again after one was lost"
        )
        self.publish_batch_size = self._histogram(
            "chat_redis_publish_batch_size",
            "Payloads sent to Redis in one pipelined batch",
            buckets=_BATCH_BUCKETS,
        )
        self.publish_seconds = self._histogram(
            "chat_redis_publish_seconds",
            "Time from sending a batch to Redis to its last reply",
            buckets=_LATENCY_BUCKETS,
        )
        self.fanout_seconds = self._histogram(
            "chat_fanout_seconds",
            "Time from a chat message's receipt (its ts, any instance) to its last local enqueue",
            buckets=_LATENCY_BUCKETS,
        )
        self.drain_seconds = Gauge(
            "chat_drain_seconds",
            "How long the last drain at shutdown took (0: none yet)",
            registry=registry,
        )

    def _counter(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def _histogram(self, name: str, documentation: str, *, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, documentation, buckets=buckets, registry=self.registry)

    def watch_connections(self, count: Callable[[], int], rooms: Callable[[], int]) -> None:
        """Read the open connections and the rooms with local members at scrape time."""
        self.connections_open.set_function(count)
        self.rooms_local.set_function(rooms)

    def watch_redis(self, connected: Callable[[], bool]) -> None:
        """Expose `chat_redis_connected` (1 while a session with Redis is up,
        read at scrape time): only instances configured with Redis have it."""
        gauge = Gauge(
            "chat_redis_connected",
            "1 while this instance has a session with Redis, else 0",
            registry=self.registry,
        )
        gauge.set_function(lambda: float(connected()))

    def count_close(self, code: int | None) -> None:
        """Count one ended connection: `code` is the server's close code, or
        None when the client ended it."""
        self.connections_closed.labels(PEER_CLOSED if code is None else str(code)).inc()

    def render(self) -> bytes:
        """Every metric in Prometheus' text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
