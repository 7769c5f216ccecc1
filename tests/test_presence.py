"""Presence v2 on one instance: per user, coalesced `presence_diff` frames
(real server, real clients). The connect storm is in tests/process/."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
import trio.testing

from chat_service.realtime import presence

from .conftest import StartServer
from .helpers import Client, connect, wait_for_join, wait_for_leave


def joined(diff: dict[str, Any]) -> dict[str, int]:
    return {join["user_id"]: join["connections"] for join in diff["joins"]}


def left(diff: dict[str, Any]) -> set[str]:
    return {leave["user_id"] for leave in diff["leaves"]}


async def unsubscribe(client: Client, room: str) -> None:
    await client.send({"type": "unsubscribe", "room": room})
    assert (await client.receive_type("unsubscribed"))["room"] == room


async def test_changes_within_one_interval_make_one_frame_of_the_net_change(
    start_server: StartServer, mock_clock: trio.testing.MockClock
) -> None:
    """On a clock that only moves when told: everything between two ticks
    is one frame to each member, with the net change."""
    server = await start_server()  # PRESENCE_INTERVAL 1 s
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(connect(server.url("c", user_id="w")))
        dee = await stack.enter_async_context(connect(server.url("c", user_id="d")))
        mock_clock.jump(1.0)
        first = await watcher.receive_presence()
        assert (joined(first), left(first), first["users"]) == ({"w": 1, "d": 1}, set(), 2)

        # One interval: a joins; b joins and leaves (cancels out); c opens two
        # tabs (one join); d, present before, leaves.
        ann = await stack.enter_async_context(connect(server.url("c", user_id="a")))
        bea = await stack.enter_async_context(connect(server.url("c", user_id="b")))
        await unsubscribe(bea, "c")
        cy = await stack.enter_async_context(connect(server.url("c", user_id="c")))
        await stack.enter_async_context(connect(server.url("c", user_id="c")))
        await unsubscribe(dee, "c")
        assert cy.subscribed["presence"]["users"] == 4  # w, d, a and itself
        mock_clock.jump(1.0)
        for member in (watcher, ann, cy):
            diff = await member.receive_presence()
            assert joined(diff) == {"a": 1, "c": 2}
            assert left(diff) == {"d"}
            assert diff["users"] == 3
        for member in (watcher, ann, cy, bea, dee):
            assert await member.drain_until_sync(skip_presence=False) == []

        mock_clock.jump(1.0)  # nothing changed: no frame
        for member in (watcher, ann, cy):
            assert await member.drain_until_sync(skip_presence=False) == []


async def test_a_second_tab_is_not_a_join_and_the_last_tab_is_the_leave(
    start_server: StartServer,
) -> None:
    server = await start_server(presence_interval=0.02)
    async with connect(server.url("tabs", user_id="w")) as watcher:
        diffs = []
        async with connect(server.url("tabs", user_id="ann")):
            await wait_for_join(watcher, "ann")
            async with connect(server.url("tabs", user_id="ann")):
                async with connect(server.url("tabs", user_id="late")) as late:
                    members = late.subscribed["presence"]["members"]
                    assert {"user_id": "ann", "connections": 2} in members
                    diffs.append(await wait_for_join(watcher, "late"))
            # The first tab closed with a tab left: no leave yet.
            diffs += await watcher.drain_until_sync(skip_presence=False)
        diffs.append(await wait_for_leave(watcher, "ann"))
        assert [diff for diff in diffs if "ann" in joined(diff)] == []
        assert [diff for diff in diffs if "ann" in left(diff)] == [diffs[-1]]


async def test_presence_is_listed_by_user_up_to_the_configured_maximum(
    start_server: StartServer,
) -> None:
    server = await start_server(presence_list_max=2)
    async with AsyncExitStack() as stack:
        for user in ("cy", "bob", "bob", "dee"):
            await stack.enter_async_context(connect(server.url("list", user_id=user)))
        last = await stack.enter_async_context(connect(server.url("list", user_id="al")))
        assert last.subscribed["presence"] == {
            "users": 4,
            "members": [
                {"user_id": "al", "connections": 1},
                {"user_id": "bob", "connections": 2},
            ],
        }


async def test_each_newcomer_sees_the_listed_members_as_they_are_when_it_joins(
    start_server: StartServer,
) -> None:
    # The listed members are built once and shown to newcomers until one of
    # them changes: a second tab, a leave, a new first user.
    server = await start_server(presence_list_max=2, presence_interval=0.02)

    def members(client: Client) -> list[tuple[str, int]]:
        listed = client.subscribed["presence"]["members"]
        return [(member["user_id"], member["connections"]) for member in listed]

    async def users_become(watcher: Client, users: int) -> None:
        # Diffs list at most 2 changes here: wait for the room's count instead.
        while (await watcher.receive_presence())["users"] != users:
            pass

    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(connect(server.url("seen", user_id="w")))
        for user in ("cy", "dee"):
            await stack.enter_async_context(connect(server.url("seen", user_id=user)))
        later = await stack.enter_async_context(connect(server.url("seen", user_id="x")))
        assert members(later) == [("cy", 1), ("dee", 1)]
        await stack.enter_async_context(connect(server.url("seen", user_id="cy")))
        second_tab = await stack.enter_async_context(connect(server.url("seen", user_id="y")))
        assert members(second_tab) == [("cy", 2), ("dee", 1)]
        async with connect(server.url("seen", user_id="bob")):
            async with connect(server.url("seen", user_id="z")) as first:
                assert members(first) == [("bob", 1), ("cy", 2)]
                await users_become(watcher, 7)
        await users_become(watcher, 5)
        gone = await stack.enter_async_context(connect(server.url("seen", user_id="zz")))
        assert members(gone) == [("cy", 2), ("dee", 1)]
        assert gone.subscribed["presence"]["users"] == 6


async def test_a_diff_lists_at_most_the_list_maximum_and_says_it_is_truncated(
    start_server: StartServer, mock_clock: trio.testing.MockClock
) -> None:
    server = await start_server(presence_list_max=2)
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(connect(server.url("t", user_id="w")))
        mock_clock.jump(1.0)
        assert "truncated" not in await watcher.receive_presence()
        for user in ("a", "b", "c"):
            await stack.enter_async_context(connect(server.url("t", user_id=user)))
        mock_clock.jump(1.0)
        diff = await watcher.receive_presence()
        assert (len(diff["joins"]), diff["leaves"], diff["users"]) == (2, [], 4)
        assert diff["truncated"] is True


async def test_a_big_room_gets_its_diffs_less_often(
    start_server: StartServer, mock_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ROOM_DIFFS_PER_SECOND x interval members (here 1 x 1 s, so 3
    members are a big room), a room's diff waits members / budget seconds."""
    monkeypatch.setattr(presence, "ROOM_DIFFS_PER_SECOND", 1)
    server = await start_server()
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(connect(server.url("big", user_id="w")))
        for user in ("a", "b"):
            await stack.enter_async_context(connect(server.url("big", user_id=user)))
        mock_clock.jump(1.0)
        assert (await watcher.receive_presence())["users"] == 3
        await stack.enter_async_context(connect(server.url("big", user_id="c")))
        mock_clock.jump(1.0)
        assert await watcher.drain_until_sync(skip_presence=False) == []  # not due yet
        mock_clock.jump(1.0)
        assert await watcher.drain_until_sync(skip_presence=False) == []
        mock_clock.jump(1.0)  # 3 s after the last diff
        assert joined(await watcher.receive_presence()) == {"c": 1}
