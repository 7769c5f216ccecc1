"""A room's sequence and history in Redis: the key names, the Lua scripts
that write and read them atomically, and `RedisHistory`, the read side.

Every key of a room carries the room's hash tag, `<prefix>{<room>}`, which
is also the room's channel, so one script touches one Redis Cluster slot.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import coredis
from coredis.exceptions import RedisError

from .history import (
    COUNTER_TTL_MIN,
    History,
    HistoryUnavailable,
    Page,
    Position,
    Start,
    new_epoch,
    recover,
)
from .message import Since

__all__ = [
    "PUBLISH_SCRIPT",
    "READ_SCRIPT",
    "REDIS_DOWN",
    "RedisClient",
    "RedisHistory",
    "RedisSession",
    "RoomKeys",
    "publish_script",
]

# What counts as "Redis is unavailable": coredis' own errors, its request
# timeouts and socket errors. Anything else is a bug.
REDIS_DOWN = (RedisError, TimeoutError, OSError)

RedisClient = coredis.Redis[Any] | coredis.RedisCluster[Any]
"""A single Redis or a Redis Cluster: the broadcaster's and history's commands work on both."""


def _script(name: str) -> str:
    """A script of `scripts/`, behind the shared prelude (room_state.lua)."""
    folder = resources.files(__package__) / "scripts"
    return (folder / "room_state.lua").read_text() + (folder / name).read_text()


def publish_script(command: str) -> str:
    """publish.lua, publishing with `command`: PUBLISH, or SPUBLISH (sharded
    pub/sub, delivered within the room's shard) on a Redis Cluster."""
    return f"local publish_command = '{command}'\n" + _script("publish.lua")


PUBLISH_SCRIPT = publish_script("PUBLISH")
# Rooms whose keys are kept at hand (about 0.5 KiB each).
ROOM_KEYS_CACHED = 4096
# How read.lua marks a range of numbers a failover skipped: '~first-last'.
_SKIP = "~"
READ_SCRIPT = _script("read.lua")


@dataclass(frozen=True, slots=True)
class RoomKeys:
    """A room's channel and keys, all under its hash tag."""

    channel: str
    seq: str
    epoch: str
    history: str
    dedupe: str
    replid: str

    @staticmethod
    @functools.lru_cache(maxsize=ROOM_KEYS_CACHED)
    def of(prefix: str, room: str) -> RoomKeys:
        """The keys of `room` (the busiest rooms' are computed once: every
        publish needs its room's)."""
        tag = f"{prefix}{{{room}}}"
        return RoomKeys(
            tag,
            *(f"{tag}:{what}" for what in ("seq", "epoch", "history", "dedupe", "replid")),
        )

    @property
    def state(self) -> list[str]:
        """The KEYS of the scripts' shared prelude, in order."""
        return [self.seq, self.epoch, self.history, self.dedupe]


@dataclass(frozen=True, slots=True)
class RedisSession:
    """A live connection to Redis with the scripts loaded (their SHA1s)."""

    client: RedisClient
    publish_sha: str
    read_sha: str


class RedisHistory(History):
    """Reads what the publish script wrote, through the broadcaster's
    current session (`session()`; None while Redis is down)."""

    def __init__(
        self,
        session: Callable[[], RedisSession | None],
        *,
        prefix: str,
        size: int,
        ttl: int,
    ) -> None:
        self._session = session
        self._prefix = prefix
        self._size = size
        self._ttl = ttl

    def state_args(self) -> list[str | int]:
        """ARGV 1-2 of every script: a fresh epoch, the counter's TTL."""
        return [new_epoch(), max(self._ttl, COUNTER_TTL_MIN)]

    async def start(self, room: str, since: Since | None) -> Start:
        after = "" if since is None else str(since.seq)
        count = 0 if since is None else self._size
        epoch, seq, entries = await self._read(room, "after", after, count)
        frames, skipped = [], []
        for entry in entries:
            if entry.startswith(_SKIP):
                first, _, last = entry[len(_SKIP) :].partition("-")
                skipped.append((int(first), int(last)))
            else:
                frames.append(entry)
        position = Position(epoch, seq)
        return recover(position, since, frames, enabled=self._ttl > 0, skipped=skipped)

    async def page(self, room: str, before: int | None, limit: int) -> Page:
        if before is not None and before <= 1:
            epoch, _, _ = await self._read(room, "after", "", 0)
            return Page(epoch, [], False)
        mark = "" if before is None else str(before)
        epoch, _, frames = await self._read(room, "before", mark, limit + 1)
        return Page(epoch, frames[:limit][::-1], len(frames) > limit)

    async def _read(
        self, room: str, mode: str, mark: str, count: int
    ) -> tuple[str, int, list[str]]:
        """Run read.lua. Raises HistoryUnavailable if Redis is down or fails."""
        session = self._session()
        if session is None:
            raise HistoryUnavailable("redis_unavailable")
        if mode == "after" and not mark:
            mode = "position"
        keys = RoomKeys.of(self._prefix, room)
        try:
            result = await session.client.evalsha(
                session.read_sha,
                keys=keys.state,
                args=[*self.state_args(), self._ttl, mode, mark, count],
            )
        except REDIS_DOWN as exc:
            raise HistoryUnavailable(str(exc)) from None
        assert isinstance(result, list | tuple)
        epoch, seq, *frames = result
        return str(epoch), int(seq), [str(frame) for frame in frames]
