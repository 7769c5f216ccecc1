"""GET /api/chat-api/rooms/{room}/messages on a real server (history in
memory): pages backwards to the first message, refuses bad parameters
naming them, and asks for the socket's token when auth is on."""

from __future__ import annotations

import jsonschema
import pytest

from chat_service.api.spec import build_openapi

from .conftest import StartServer
from .helpers import Client, RunningServer, connect, get_json, room_history
from .tokens import SECRET, mint

OPERATION = build_openapi()["paths"]["/api/chat-api/rooms/{room}/messages"]["get"]


def assert_documented(status: int, body: object) -> None:
    schema = OPERATION["responses"][str(status)]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(schema).validate(body)


async def say_all(client: Client, count: int) -> list[dict[str, object]]:
    """Send `count` messages; the chat frames the socket delivered for them."""
    for n in range(count):
        await client.send({"body": f"m{n}", "client_msg_id": f"id-{n}"})
    return [await client.receive_type("chat") for _ in range(count)]


async def test_pages_go_backwards_to_the_first_message(server: RunningServer) -> None:
    async with connect(server.url("paged")) as client:
        delivered = await say_all(client, 7)
    path = "/api/chat-api/rooms/paged/messages"
    status, _, newest = await get_json(server.port, f"{path}?limit=3")
    assert status == 200
    assert_documented(200, newest)
    assert [m["seq"] for m in newest["messages"]] == [5, 6, 7]
    assert (newest["room"], newest["epoch"]) == ("paged", client.subscribed["epoch"])
    assert (newest["has_more"], newest["next_before"]) == (True, 5)
    _, _, middle = await get_json(server.port, f"{path}?limit=3&before=5")
    assert [m["seq"] for m in middle["messages"]] == [2, 3, 4]
    _, _, first = await get_json(server.port, f"{path}?limit=3&before=2")
    assert [m["seq"] for m in first["messages"]] == [1]
    assert (first["has_more"], first["next_before"]) == (False, None)
    # What history gives back is what the socket delivered, to the letter.
    assert await room_history(server.port, "paged", limit=2) == delivered


async def test_without_parameters_the_newest_fifty(server: RunningServer) -> None:
    async with connect(server.url("busy")) as client:
        await say_all(client, 55)
    status, _, page = await get_json(server.port, "/api/chat-api/rooms/busy/messages")
    assert status == 200
    assert [m["seq"] for m in page["messages"]] == list(range(6, 56))
    assert (page["has_more"], page["next_before"]) == (True, 6)


async def test_a_room_without_messages_and_history_off_answer_empty(
    start_server: StartServer,
) -> None:
    server = await start_server(history_ttl=0)
    async with connect(server.url("off")) as client:
        await say_all(client, 2)
    for room in ("off", "never-used"):
        status, _, page = await get_json(server.port, f"/api/chat-api/rooms/{room}/messages")
        assert status == 200
        assert (page["messages"], page["has_more"], page["next_before"]) == ([], False, None)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("before=0", "invalid_before"),
        ("before=-3", "invalid_before"),
        ("before=abc", "invalid_before"),
        ("before=", "invalid_before"),
        (f"before={2**53}", "invalid_before"),
        ("limit=0", "invalid_limit"),
        ("limit=101", "invalid_limit"),
        ("limit=1.5", "invalid_limit"),
        ("limit=10&before=x", "invalid_before"),
    ],
)
async def test_a_bad_parameter_is_400_naming_it(
    server: RunningServer, query: str, error: str
) -> None:
    status, _, body = await get_json(server.port, f"/api/chat-api/rooms/r/messages?{query}")
    assert (status, body["error"]) == (400, error)
    assert_documented(400, body)


async def test_a_bad_room_name_is_400(server: RunningServer) -> None:
    status, _, body = await get_json(server.port, "/api/chat-api/rooms/no%20spaces/messages")
    assert (status, body["error"]) == (400, "invalid_room")


async def test_with_auth_the_sockets_token_rules_hold(start_server: StartServer) -> None:
    server = await start_server(auth_enabled=True, auth_jwt_secret=SECRET)
    team = mint(sub="ann", rooms=["team-*"])
    async with connect(server.url("team-red", token=team)) as client:
        delivered = await say_all(client, 3)
    path = "/api/chat-api/rooms/team-red/messages"
    header = f"Authorization: Bearer {team}\r\n"
    assert await room_history(server.port, "team-red", extra_headers=header) == delivered
    status, _, page = await get_json(server.port, f"{path}?token={team}&limit=1")
    assert (status, [m["seq"] for m in page["messages"]]) == (200, [3])

    status, headers, body = await get_json(server.port, path)
    assert (status, body["error"], headers["www-authenticate"]) == (401, "unauthorized", "Bearer")
    assert_documented(401, body)
    expired = mint(sub="ann", expires_in=-120)
    status, _, body = await get_json(server.port, f"{path}?token={expired}")
    assert (status, body["error"]) == (401, "unauthorized")
    status, _, body = await get_json(server.port, "/api/chat-api/rooms/general/messages", header)
    assert (status, body["error"]) == (403, "forbidden_room")
    assert_documented(403, body)
