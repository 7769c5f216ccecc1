"""The benchmark's scenarios and their headline metrics (the issue's goals,
which judge some of them, are bench/goals.py's).

A scenario is what the load generator does (bench/loadgen.js's fields) and
how the servers are configured for it; `full` sizes are the issue's, `smoke`
sizes are tiny, for the test that keeps the benchmark from rotting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["SCENARIOS", "Metric", "Scenario", "smoke"]

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Metric:
    """One figure a scenario reports; `key` names a field of its result."""

    key: str
    label: str
    unit: str
    better: Better


@dataclass(frozen=True)
class Scenario:
    """One load pattern, run against each server in `servers`."""

    name: str
    mode: Literal["fanout", "rate", "rooms", "idle", "storm"]
    rooms: int
    clients_per_room: int
    metrics: tuple[Metric, ...]
    batch: bool = False
    # Clients offer permessage-deflate (as browsers do), else nothing.
    deflate: bool = False
    in_flight: int = 0
    rate: float = 0.0
    warmup: float = 3.0
    duration: float = 10.0
    drain: float = 1.0
    instances: int = 1
    redis: bool = False
    # Instances share a 3-master Redis Cluster (REDIS_CLUSTER_URL) instead.
    redis_cluster: bool = False
    # redis-server on the servers' core rather than the load generator's.
    redis_on_server_core: bool = False
    servers: tuple[str, ...] = ("ours", "baseline", "starlette")
    # Settings of our server for this scenario (environment variables).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """What the scenario does, in words, at its actual sizes."""
        if self.mode == "fanout":
            words = f"{self.rooms} room x {self.clients_per_room}, 1 publisher, "
            words += f"{self.in_flight} in flight"
        elif self.mode == "rate":
            words = f"{self.rooms} room x {self.clients_per_room}, {self.rate:g} msg/s"
        elif self.mode == "rooms":
            words = f"{self.rooms} rooms x {self.clients_per_room}, {self.rate:g} msg/s per client"
        elif self.mode == "storm":
            words = f"{self.clients_per_room:,} clients connecting at once to 1 room"
        else:
            words = f"{self.rooms * self.clients_per_room:,} idle connections"
        if self.instances > 1:
            broker = "a 3-shard Redis Cluster" if self.redis_cluster else "1 Redis"
            words = f"{self.instances} instances on {broker}, {words}"
            if self.redis_on_server_core:
                words = f"{words}, all on one core"
        elif self.redis:
            words = f"{words}, through Redis"
        words += ", batch=1" if self.batch else ""
        return words + (", offering permessage-deflate" if self.deflate else "")

    def loadgen_config(self, urls: list[str], ready_frame: str = "welcome") -> dict[str, Any]:
        """The JSON scenario bench/loadgen.js reads; `ready_frame` is the
        frame that tells a storm's client it is in the room."""
        return {
            "mode": self.mode,
            "urls": urls,
            "rooms": self.rooms,
            "clients_per_room": self.clients_per_room,
            "batch": self.batch,
            "deflate": self.deflate,
            "in_flight": self.in_flight,
            "rate": self.rate,
            "warmup": self.warmup,
            "duration": self.duration,
            "drain": self.drain,
            # Enough parallel handshakes to keep the server's core busy, few
            # enough not to overflow its listen backlog.
            "connect_concurrency": 100,
            "connect_timeout": 30,
            "ready_frame": ready_frame,
        }


_DELIVERIES = Metric("deliveries_per_s", "deliveries/s", "/s", "higher")
# Server CPU time per delivered frame: the per-frame cost the profile explains.
_CPU_PER_DELIVERY = Metric("cpu_us_per_delivery", "server CPU per delivery", "µs", "lower")
_P50 = Metric("latency_p50_ms", "p50 latency", "ms", "lower")
_P99 = Metric("latency_p99_ms", "p99 latency", "ms", "lower")
_SUSTAINED = Metric("sustained_fraction", "sustained (delivered/offered)", "", "higher")


def _batched(scenario: Scenario) -> Scenario:
    return replace(scenario, name=f"{scenario.name}-batched", batch=True)


_ROOM500_MAX = Scenario(
    "room500-max",
    "fanout",
    rooms=1,
    clients_per_room=500,
    in_flight=50,
    metrics=(_DELIVERIES, _CPU_PER_DELIVERY),
)
# Issue 19's offered load for one big room: 25,000 deliveries/s.
_ROOM500_50MPS = Scenario(
    "room500-50mps",
    "rate",
    rooms=1,
    clients_per_room=500,
    rate=50,
    metrics=(_SUSTAINED, _P50, _P99),
)
_ROOMS50X20 = Scenario(
    "rooms50x20", "rooms", rooms=50, clients_per_room=20, rate=1, metrics=(_SUSTAINED, _P99)
)
_IDLE5000 = Scenario(
    "idle5000",
    "idle",
    rooms=1,
    clients_per_room=5000,
    metrics=(Metric("kib_per_connection", "KiB per connection", "KiB", "lower"),),
)

SCENARIOS: tuple[Scenario, ...] = (
    _ROOM500_MAX,
    _batched(_ROOM500_MAX),
    # What compression costs fan-out (clients offering it, as browsers do).
    replace(_ROOM500_MAX, name="room500-max-deflate", deflate=True, env={"WS_COMPRESSION": "true"}),
    _ROOM500_50MPS,
    _batched(_ROOM500_50MPS),
    _ROOMS50X20,
    _batched(_ROOMS50X20),
    _IDLE5000,
    # Browsers offer permessage-deflate; ours negotiates it only with
    # WS_COMPRESSION (the baseline, Hypercorn's default, and uvicorn always do).
    replace(_IDLE5000, name="idle5000-deflate", deflate=True, env={"WS_COMPRESSION": "true"}),
    replace(
        _batched(_ROOMS50X20),
        name="redis2x-rooms50x20-batched",
        instances=2,
        redis=True,
        # The baseline has no Redis fan-out: the ratio compares with its
        # single-instance run of the same load (rooms50x20-batched).
        # Starlette's two instances share the Redis through broadcaster.
        servers=("ours", "starlette"),
    ),
)

# A deploy: a whole room reconnects at once. Every client must be in the
# room (ours: `welcome` and `subscribed`; the others: `welcome`, which they
# send once subscribed), and none may be cut off.
_STORM5000 = Scenario(
    "storm5000",
    "storm",
    rooms=1,
    clients_per_room=5000,
    metrics=(
        Metric("clients_per_s", "clients/s accepted", "/s", "higher"),
        Metric("cut_off", "cut off", "", "lower"),
        Metric("presence_diffs_max", "presence diffs per client (max)", "", "lower"),
    ),
    warmup=0.0,
    # Long enough for the storm's last presence diff (PRESENCE_INTERVAL 1 s).
    duration=5.0,
    drain=0.0,
)
SCENARIOS += (
    _STORM5000,
    # The baseline has no Redis fan-out; Starlette's goes through broadcaster.
    replace(_STORM5000, name="redis-storm5000", redis=True, servers=("ours", "starlette")),
)

# The same load over the same two instances, on a Redis Cluster: what the
# cluster costs or gains against one Redis, in one run.
SCENARIOS += tuple(
    replace(
        scenario,
        name="cluster2x" + scenario.name[len("redis2x") :],
        redis=False,
        redis_cluster=True,
        # broadcaster has no Redis Cluster backend.
        servers=("ours",),
    )
    for scenario in SCENARIOS
    if scenario.name.startswith("redis2x")
)

# Issue 19's: both instances and redis-server share the server core.
SCENARIOS += tuple(
    replace(
        scenario,
        name=f"redis2x-1core-{scenario.name}",
        instances=2,
        redis=True,
        redis_on_server_core=True,
        # Starlette: two uvicorn processes on the same Redis (broadcaster's backend).
        servers=("ours", "starlette"),
    )
    for scenario in (_ROOMS50X20, _batched(_ROOMS50X20))
)

# The scenario whose baseline figures stand in for a Redis scenario's.
BASELINE_STAND_IN = {
    "redis2x-rooms50x20-batched": "rooms50x20-batched",
    "cluster2x-rooms50x20-batched": "rooms50x20-batched",
    "redis2x-1core-rooms50x20": "rooms50x20",
    "redis2x-1core-rooms50x20-batched": "rooms50x20-batched",
}


def smoke(scenario: Scenario) -> Scenario:
    """`scenario` at tiny sizes: it exercises every path in about a second."""
    clients = {"idle": 50, "rooms": 4}.get(scenario.mode, 20)
    return replace(
        scenario,
        rooms=min(scenario.rooms, 3),
        clients_per_room=clients,
        in_flight=min(scenario.in_flight, 5),
        rate=scenario.rate * 4,
        warmup=0.2,
        duration=0.5,
        drain=0.2,
    )
