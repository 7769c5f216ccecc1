"""Fan-out through a Redis Cluster with sharded pub/sub (coredis, on trio).

The same broadcaster as `RedisBroadcaster`, on a cluster: every key of a
room and its channel share the room's hash tag, so the publish script runs
on the shard that owns the room and SPUBLISHes there, and SSUBSCRIBE asks
only that shard. Traffic of a room never crosses to the other shards
(classic PUBLISH in a cluster is forwarded to every node). Batches stay
one pipeline per batch, which coredis splits into one pipeline per shard.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import coredis
import trio
from coredis.connection import TCPLocation
from coredis.pool import ClusterConnectionPool
from coredis.retry import NoRetryPolicy

from ..config import cluster_seeds
from .redis_broadcaster import (
    REDIS_TIMEOUT,
    Publish,
    RedisBroadcaster,
    ScriptRun,
    Subscriber,
    _Queued,
)
from .redis_history import RedisClient, publish_script

__all__ = ["RedisClusterBroadcaster"]


class RedisClusterBroadcaster(RedisBroadcaster):
    """`RedisBroadcaster` on a Redis Cluster (`REDIS_CLUSTER_URL`).

    A session that fails (a node died, a failover is under way, a slot
    moved past coredis' own redirect handling) ends as on a single Redis:
    this instance delivers locally until a new session, bootstrapped from
    any live seed node, has rediscovered the cluster and resubscribed every
    room on its current owner.
    """

    # The publish script also notices a failover: see publish.lua.
    _publish_script = publish_script("SPUBLISH")

    def __init__(self, url: str, **settings: Any) -> None:
        super().__init__(url, **settings)
        parts = urlsplit(url.partition(",")[0])
        self._seeds = [TCPLocation(host, port) for host, port in cluster_seeds(url)]
        self._username = parts.username or None
        self._password = parts.password or None

    def _open_client(self) -> RedisClient:
        """A cluster client that discovers the cluster from any live seed."""
        pool = ClusterConnectionPool(
            startup_nodes=self._seeds,
            username=self._username,
            password=self._password,
            decode_responses=True,
            client_name=self.client_name,
            connect_timeout=REDIS_TIMEOUT,
            stream_timeout=REDIS_TIMEOUT,
        )
        return coredis.RedisCluster(
            connection_pool=pool, decode_responses=True, retry_policy=NoRetryPolicy()
        )

    @contextlib.asynccontextmanager
    async def _open_publisher(self, client: RedisClient) -> AsyncIterator[Publish]:
        """Batches as coredis pipelines: it sends each shard its runs."""

        async def publish(sha: str, runs: list[ScriptRun], marker: str | None) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                replies = [pipe.evalsha(sha, keys, args) for keys, args in runs]
                if marker is not None:
                    pipe.publish(self.control_channel, marker)
            return [await reply for reply in replies]

        await trio.lowlevel.checkpoint()
        yield publish

    @contextlib.asynccontextmanager
    async def _open_pubsub(self, client: Any) -> AsyncIterator[Subscriber]:
        """coredis' sharded pub/sub: SSUBSCRIBE on each room's shard."""
        async with client.sharded_pubsub(
            ignore_subscribe_messages=True,
            retry_policy=NoRetryPolicy(),
            subscription_timeout=REDIS_TIMEOUT,
        ) as pubsub:
            yield _ShardedSubscriber(pubsub)

    async def flush(self) -> None:
        """See `Broadcaster.flush`. Shards do not order their messages with
        each other, so one marker goes through each room this instance
        receives, behind that room's frames on the room's own shard, and the
        flush waits for all of them."""
        if not self._connected or not self._active:
            await trio.lowlevel.checkpoint()
            return
        tokens = {room: secrets.token_hex(8) for room in self._active}
        waiters = [self._flush_waiters.setdefault(token, trio.Event()) for token in tokens.values()]
        try:
            for room, token in tokens.items():
                await self._send(_Queued(self._channel(room), self.flush_mark(token), room))
            for arrived in waiters:
                await arrived.wait()
        finally:
            for token in tokens.values():
                self._flush_waiters.pop(token, None)


class _ShardedSubscriber:
    """coredis' sharded pub/sub as a `Subscriber`."""

    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    async def subscribe(self, *channels: str) -> None:
        await self._pubsub.subscribe(*channels)

    async def unsubscribe(self, *channels: str) -> None:
        await self._pubsub.unsubscribe(*channels)

    async def receive(self) -> list[tuple[str, str]]:
        message = await self._pubsub.get_message()
        if message is None or message["type"] != "message":
            return []
        return [(str(message["channel"]), str(message["data"]))]
