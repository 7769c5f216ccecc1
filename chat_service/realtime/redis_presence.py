"""Presence across instances through Redis: each instance keeps its share
of every room it has members in (a hash per room and instance, with a TTL),
refreshed every presence interval, and reads the others' shares back.

Keys, under the room's hash tag (`<prefix>{<room>}`, so one Cluster slot):
`<tag>:presence` indexes the instances with a share and when each share
expires; `<tag>:presence:<instance>` is a share, user_id -> connections.
An instance that dies stops refreshing: its share drops out once its TTL
has passed, and the others see its users leave.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from .presence import PresenceUnavailable, Share
from .redis_history import REDIS_DOWN, RedisClient, RedisSession, RoomKeys

__all__ = ["PRESENCE_SCRIPT", "RedisPresence"]

PRESENCE_SCRIPT = (resources.files(__package__) / "scripts" / "presence.lua").read_text()
# presence.lua's modes.
_REPLACE, _KEEP, _DROP, _PEEK = "r", "k", "x", "p"


class RedisPresence:
    """The presence store on Redis (see the module docstring), through the
    broadcaster's current session (`session()`; None while Redis is down)."""

    def __init__(
        self, session: Callable[[], RedisSession | None], *, prefix: str, ttl: float
    ) -> None:
        self._session = session
        self._prefix = prefix
        self._ttl_ms = max(1, round(ttl * 1000))
        self.instance = secrets.token_hex(8)
        """This instance's name in the rooms' indexes."""
        self._loaded: RedisClient | None = None  # the client the script was loaded on
        self._sha = ""

    def _keys(self, room: str) -> list[str]:
        index = f"{RoomKeys.of(self._prefix, room).channel}:presence"
        return [index, f"{index}:{self.instance}"]

    async def _client(self) -> RedisClient:
        session = self._session()
        if session is None:
            raise PresenceUnavailable("redis_unavailable")
        if self._loaded is not session.client:
            self._sha = await session.client.script_load(PRESENCE_SCRIPT)
            self._loaded = session.client
        return session.client

    async def sync(self, shares: Mapping[str, Share | None]) -> dict[str, dict[str, int]]:
        """Write this instance's share of each room (None: unchanged, just
        refreshed; empty: it left the room), in one pipeline, and return
        the other live instances' connections per user of each room.

        Raises `PresenceUnavailable` while Redis is down or failing. If
        cancelled, some shares may have been written.
        """
        try:
            client = await self._client()
            runs = []
            async with client.pipeline(transaction=False) as pipe:
                for room, share in shares.items():
                    args: list[str | int] = [self.instance, self._ttl_ms]
                    if share is None:
                        args.append(_KEEP)
                    elif not share:
                        args.append(_DROP)
                    else:
                        args.append(_REPLACE)
                        for user, count in share.items():
                            args += [user, count]
                    runs.append((room, pipe.evalsha(self._sha, self._keys(room), args)))
            return {room: _counts(await run) for room, run in runs}
        except REDIS_DOWN as exc:
            raise PresenceUnavailable(str(exc) or type(exc).__name__) from None

    async def read(self, room: str) -> dict[str, int]:
        """Every live instance's connections per user of `room` (this
        one's as last written). Raises `PresenceUnavailable` while Redis is
        down or failing."""
        try:
            client = await self._client()
            index, _ = self._keys(room)
            # No instance is named "": every share counts.
            reply = await client.evalsha(self._sha, [index, f"{index}:"], ["", 1, _PEEK])
            return _counts(reply)
        except REDIS_DOWN as exc:
            raise PresenceUnavailable(str(exc) or type(exc).__name__) from None


def _counts(reply: Any) -> dict[str, int]:
    """presence.lua's flat user_id, connections, ... as a dict."""
    items = list(reply)
    return {str(items[i]): int(items[i + 1]) for i in range(0, len(items), 2)}
