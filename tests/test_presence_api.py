"""GET /api/chat-api/rooms/{room}/presence on a real server (presence in
memory): the members per user, paged by user_id past what `subscribed`
lists, bad parameters refused naming them, the socket's token rules."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import jsonschema
import pytest

from chat_service.api.spec import build_openapi

from .conftest import StartServer
from .helpers import RunningServer, connect, get_json
from .tokens import SECRET, mint

OPERATION = build_openapi()["paths"]["/api/chat-api/rooms/{room}/presence"]["get"]


def assert_documented(status: int, body: object) -> None:
    schema = OPERATION["responses"][str(status)]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(schema).validate(body)


async def every_member(port: int, room: str, *, limit: int, cursor: str | None = None) -> list[Any]:
    """Every member the endpoint lists, page after page from `cursor`."""
    members = []
    while True:
        query = f"limit={limit}" + ("" if cursor is None else f"&cursor={cursor}")
        status, _, page = await get_json(port, f"/api/chat-api/rooms/{room}/presence?{query}")
        assert status == 200, page
        assert_documented(200, page)
        members += page["members"]
        if (cursor := page["next_cursor"]) is None:
            return members


async def test_pages_go_on_where_subscribed_stopped(start_server: StartServer) -> None:
    server = await start_server(presence_list_max=2)
    users = ["bob", "al", "dee", "cy", "al", "eve"]
    async with AsyncExitStack() as stack:
        for user in users:
            await stack.enter_async_context(connect(server.url("big", user_id=user)))
        late = await stack.enter_async_context(connect(server.url("big", user_id="fay")))
        listed = late.subscribed["presence"]["members"]
        assert [m["user_id"] for m in listed] == ["al", "bob"]

        status, _, first = await get_json(server.port, "/api/chat-api/rooms/big/presence")
        assert status == 200
        assert (first["room"], first["users"], first["connections"]) == ("big", 6, 7)
        assert first["members"] == listed  # the default page is what subscribed lists
        assert first["next_cursor"] == "bob"
        rest = await every_member(server.port, "big", limit=3, cursor=listed[-1]["user_id"])
        assert rest == [
            {"user_id": "cy", "connections": 1},
            {"user_id": "dee", "connections": 1},
            {"user_id": "eve", "connections": 1},
            {"user_id": "fay", "connections": 1},
        ]
        assert await every_member(server.port, "big", limit=1000) == listed + rest


async def test_an_empty_room_has_nobody(server: RunningServer) -> None:
    status, _, body = await get_json(server.port, "/api/chat-api/rooms/nobody/presence")
    assert status == 200
    assert body == {
        "room": "nobody",
        "users": 0,
        "connections": 0,
        "members": [],
        "next_cursor": None,
    }


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("limit=0", "invalid_limit"),
        ("limit=1001", "invalid_limit"),
        ("limit=x", "invalid_limit"),
        ("cursor=", "invalid_cursor"),
        ("cursor=a%20b", "invalid_cursor"),
    ],
)
async def test_a_bad_parameter_is_400_naming_it(
    server: RunningServer, query: str, error: str
) -> None:
    status, _, body = await get_json(server.port, f"/api/chat-api/rooms/r/presence?{query}")
    assert (status, body["error"]) == (400, error)
    assert_documented(400, body)


async def test_with_auth_the_sockets_token_rules_hold(start_server: StartServer) -> None:
    server = await start_server(auth_enabled=True, auth_jwt_secret=SECRET)
    team = mint(sub="ann", rooms=["team-*"])
    path = "/api/chat-api/rooms/team-red/presence"
    async with connect(server.url("team-red", token=team)):
        status, _, body = await get_json(server.port, f"{path}?token={team}")
        assert (status, body["members"]) == (200, [{"user_id": "ann", "connections": 1}])
        header = f"Authorization: Bearer {team}\r\n"
        status, _, body = await get_json(server.port, path, header)
        assert (status, body["users"]) == (200, 1)

        status, headers, body = await get_json(server.port, path)
        assert (status, body["error"], headers["www-authenticate"]) == (
            401,
            "unauthorized",
            "Bearer",
        )
        assert_documented(401, body)
        other = "/api/chat-api/rooms/general/presence"
        status, _, body = await get_json(server.port, other, header)
        assert (status, body["error"]) == (403, "forbidden_room")
        assert_documented(403, body)
