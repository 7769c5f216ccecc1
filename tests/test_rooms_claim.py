"""The token's `rooms` claim (glob patterns) limits the rooms a socket may be
in and say something in: 403 before the upgrade for the path's room, an
`error` `forbidden_room` frame for a `subscribe` or a `chat`."""

from __future__ import annotations

import json

import pytest

from .conftest import StartServer
from .helpers import RunningServer, connect, raw_upgrade
from .test_rooms import subscribe
from .tokens import SECRET, mint


def team_only() -> str:
    """A token for the team rooms and the lobby, minted when the test runs."""
    return mint(sub="ann", rooms=["team-*", "lobby"])


@pytest.fixture
async def auth_server(start_server: StartServer) -> RunningServer:
    return await start_server(auth_enabled=True, auth_jwt_secret=SECRET)


async def test_path_room_outside_the_claim_is_403_before_upgrade(
    auth_server: RunningServer,
) -> None:
    header = f"Authorization: Bearer {team_only()}\r\n"
    status, _, body = await raw_upgrade(auth_server.port, "/api/chat-api/ws/general", header)
    assert (status, json.loads(body)["error"]) == (403, "forbidden_room")
    assert auth_server.runtime.hub.connection_count() == 0


async def test_rooms_the_patterns_match_are_allowed(auth_server: RunningServer) -> None:
    async with connect(auth_server.url(token=team_only())) as client:
        assert client.subscribed["room"] == "lobby"
        assert (await subscribe(client, "team-red"))["room"] == "team-red"
        await client.send({"room": "team-red", "body": "hi"})
        chat = await client.receive_type("chat")
        assert (chat["room"], chat["body"]) == ("team-red", "hi")


async def test_subscribe_outside_the_claim_is_refused(auth_server: RunningServer) -> None:
    async with connect(auth_server.url("team-a", token=team_only())) as client:
        await client.send({"type": "subscribe", "room": "teams"})
        error = await client.receive_type("error")
        assert (error["code"], error["room"]) == ("forbidden_room", "teams")
        assert auth_server.runtime.hub.room_names() == ["team-a"]
        # The connection lives on.
        await client.send({"body": "still here"})
        assert (await client.receive_type("chat"))["body"] == "still here"


async def test_chat_outside_the_claim_is_refused_and_reaches_nobody(
    auth_server: RunningServer,
) -> None:
    async with (
        connect(auth_server.url("general", token=mint(sub="bob"))) as listener,
        connect(auth_server.url("team-a", token=team_only())) as client,
    ):
        await client.send({"room": "general", "body": "sneaking in"})
        error = await client.receive_type("error")
        assert (error["code"], error["room"]) == ("forbidden_room", "general")
        assert [f for f in await listener.drain_until_sync() if f["type"] == "chat"] == []


async def test_without_a_rooms_claim_every_room_is_allowed(auth_server: RunningServer) -> None:
    async with connect(auth_server.url("anything", token=mint())) as client:
        assert (await subscribe(client, "whatever.else"))["room"] == "whatever.else"


async def test_an_empty_claim_allows_no_room(auth_server: RunningServer) -> None:
    header = f"Authorization: Bearer {mint(rooms=[])}\r\n"
    status, _, body = await raw_upgrade(auth_server.port, "/api/chat-api/ws", header)
    assert (status, json.loads(body)["error"]) == (403, "forbidden_room")
