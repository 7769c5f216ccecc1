"""GET /api/chat-api/rooms: the rooms with members on this instance and
their counts, through a real server and real clients; with auth on, only
for a caller with a token, and only the rooms its claim covers."""

from __future__ import annotations

from .conftest import StartServer
from .helpers import RunningServer, connect, get_json
from .tokens import SECRET, mint

ROOMS = "/api/chat-api/rooms"


async def test_rooms_with_local_members_and_their_counts(server: RunningServer) -> None:
    assert (await get_json(server.port, ROOMS))[2] == {"rooms": [], "connections": 0}
    async with (
        connect(server.url("general", user_id="alice")),
        connect(server.url("general", user_id="alice")),  # a second tab
        connect(server.url("general", user_id="bob")),
        connect(server.url("side", user_id="bob")) as side,
    ):
        await side.send({"type": "subscribe", "room": "extra"})
        await side.receive_type("subscribed")
        status, headers, body = await get_json(server.port, ROOMS)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert body == {
        "rooms": [
            {
                "room": "extra",
                "local_connections": 1,
                "local_users": 1,
                "users": 1,
                "connections": 1,
            },
            {
                "room": "general",
                "local_connections": 3,
                "local_users": 2,
                "users": 2,
                "connections": 3,
            },
            {
                "room": "side",
                "local_connections": 1,
                "local_users": 1,
                "users": 1,
                "connections": 1,
            },
        ],
        "connections": 4,
    }


async def test_with_auth_on_a_token_is_needed_and_its_claim_limits_the_rooms(
    start_server: StartServer,
) -> None:
    server = await start_server(auth_enabled=True, auth_jwt_secret=SECRET)
    async with (
        connect(server.url("team-red", token=mint(sub="ann"))),
        connect(server.url("general", token=mint(sub="bob"))),
    ):
        status, headers, body = await get_json(server.port, ROOMS)
        assert (status, body["error"]) == (401, "unauthorized")
        assert headers["www-authenticate"] == "Bearer"
        bad = await get_json(server.port, ROOMS, "Authorization: Bearer not-a-jwt\r\n")
        assert bad[0] == 401
        everything = await get_json(server.port, f"{ROOMS}?token={mint(sub='ops')}")
        assert [room["room"] for room in everything[2]["rooms"]] == ["general", "team-red"]
        teams = mint(sub="ann", rooms=["team-*"])
        status, _, body = await get_json(server.port, ROOMS, f"Authorization: Bearer {teams}\r\n")
    assert status == 200
    assert [room["room"] for room in body["rooms"]] == ["team-red"]
