"""The chat WebSocket layer around the Quart app: it serves exactly the
upgrades Quart would have routed to the chat endpoints, and leaves every
other request to Quart."""

from __future__ import annotations

import json

import pytest

from .helpers import RunningServer, connect, raw_upgrade


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/chat-api/ws/", 404),  # an empty room is no room: no endpoint
        ("/api/chat-api/ws/a%2Fb", 404),  # a slash in the room: no endpoint
        ("/api/chat-api/ws/general/", 404),
        ("/api/chat-api/wsx", 404),
        ("/api//chat-api/ws", 308),  # Quart's redirect to the merged slashes
        ("/healthz", 400),  # an HTTP route asked for a WebSocket
    ],
)
async def test_other_upgrades_are_answered_by_quart(
    server: RunningServer, path: str, status: int
) -> None:
    answer, _, _ = await raw_upgrade(server.port, path)
    assert answer == status
    assert server.runtime.hub.connection_count() == 0


async def test_a_percent_encoded_room_is_the_decoded_name(server: RunningServer) -> None:
    async with connect(f"ws://127.0.0.1:{server.port}/api/chat-api/ws/caf%65") as client:
        assert client.welcome["room"] == "cafe"
        await client.send({"body": "hi"})
        assert (await client.receive_type("chat"))["room"] == "cafe"


async def test_the_refusal_is_quarts_json_answer(server: RunningServer) -> None:
    status, headers, body = await raw_upgrade(server.port, "/api/chat-api/ws?since=x&epoch=e")
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert body.endswith(b"\n")
    assert json.loads(body)["error"] == "invalid_since"
