"""Presence across instances on one real redis-server: users on both see
each other in `subscribed`, in diffs and in the endpoint; an instance that
is SIGKILLed drops out within PRESENCE_TTL and its users' leaves are sent."""

from __future__ import annotations

from typing import Any

import trio
from pytest_redis.executor import RedisExecutor

from ..conftest import StartServer
from ..helpers import connect, get_json, wait_for_join, wait_for_leave
from ..raw_websocket import raw_websocket
from ..redis_helpers import start_instances, tcp_url
from ..server_process import server_process

# Short, so that the test waits for a dead instance's TTL for 2 s only; long
# enough that a busy machine delaying a live instance's refresh does not
# make its users leave.
INTERVAL = 0.05
TTL = 2.0


async def members(port: int, room: str) -> dict[str, int]:
    status, _, body = await get_json(port, f"/api/chat-api/rooms/{room}/presence")
    assert status == 200, body
    return {member["user_id"]: member["connections"] for member in body["members"]}


async def wait_for_members(port: int, room: str, expected: dict[str, int]) -> None:
    """Poll the endpoint until it lists `expected`: the other instance's
    next write is what is waited for (within a few intervals)."""
    with trio.fail_after(10):
        while True:
            if await members(port, room) == expected:
                return
            await trio.sleep(INTERVAL)


def listed(presence: dict[str, Any]) -> dict[str, int]:
    return {member["user_id"]: member["connections"] for member in presence["members"]}


async def test_users_on_two_instances_see_each_other(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    a, b = await start_instances(
        start_server, tcp_url(redis_server), 2, presence_interval=INTERVAL, presence_ttl=TTL
    )
    async with connect(a.url("p", user_id="alice")) as alice:
        await wait_for_members(b.port, "p", {"alice": 1})  # b has nobody in p: read from Redis
        async with connect(b.url("p", user_id="bob")) as bob:
            # b's first member of p waited for the other instances' share.
            assert listed(bob.subscribed["presence"]) == {"alice": 1, "bob": 1}
            diff = await wait_for_join(alice, "bob")
            assert diff["users"] == 2
            async with connect(a.url("p", user_id="bob")):  # bob's second tab, elsewhere
                for server in (a, b):
                    await wait_for_members(server.port, "p", {"alice": 1, "bob": 2})
            await wait_for_members(a.port, "p", {"alice": 1, "bob": 1})
        diff = await wait_for_leave(alice, "bob")
        assert diff["users"] == 1
        for server in (a, b):
            await wait_for_members(server.port, "p", {"alice": 1})
        # Neither tab of bob's was a join or a leave of its own.
        assert await alice.drain_until_sync(skip_presence=False) == []


async def test_a_killed_instance_drops_out_within_the_ttl(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    url = tcp_url(redis_server)
    (survivor,) = await start_instances(
        start_server, url, 1, presence_interval=INTERVAL, presence_ttl=TTL
    )
    settings = {
        "REDIS_URL": url,
        "PRESENCE_INTERVAL": str(INTERVAL),
        "PRESENCE_TTL": str(TTL),
    }
    async with (
        connect(survivor.url("k", user_id="alice")) as alice,
        server_process(**settings) as doomed,
        raw_websocket(doomed.port, "/api/chat-api/ws/k?user_id=carol"),
    ):
        await wait_for_join(alice, "carol")
        assert await members(survivor.port, "k") == {"alice": 1, "carol": 1}
        doomed.process.kill()
        killed = trio.current_time()
        diff = await wait_for_leave(alice, "carol")
        gone_after = trio.current_time() - killed
        assert diff["users"] == 1
        # Its share expires TTL after its last refresh, and the survivor
        # notices at its next interval.
        assert gone_after <= TTL + 3 * INTERVAL, gone_after
        assert await members(survivor.port, "k") == {"alice": 1}


async def test_the_endpoint_is_503_while_redis_is_down_for_a_room_with_nobody_here(
    start_server: StartServer, redis_server: RedisExecutor
) -> None:
    (server,) = await start_instances(start_server, tcp_url(redis_server), 1)
    redis_server.stop()
    status, _, body = await get_json(server.port, "/api/chat-api/rooms/far/presence")
    assert (status, body["error"]) == (503, "unavailable")
