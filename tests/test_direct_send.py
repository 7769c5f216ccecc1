"""The direct path of fan-out (frames written from the publishing task while
a connection has nothing queued) and its fallback: a client whose socket
fills in the middle of a frame still gets every frame whole and in order,
plain or compressed, batched or not."""

from __future__ import annotations

import json
import secrets
import zlib

import pytest
import trio

from .conftest import StartServer
from .helpers import WAIT, connect
from .raw_websocket import DEFLATE_OFFER, TEXT, RawWebSocket, raw_websocket

BODY_CHARS = 30_000
# Frames waiting in the slow reader's queue before it reads again: its
# socket is full, and the rest of a frame the kernel took in part waits too.
BACKLOG = 4
ROOM = "direct"


def _body(n: int) -> str:
    # Random text, so that a compressed frame is still large.
    return f"{n}:" + secrets.token_hex(BODY_CHARS // 2 - 8)


async def _receive(ws: RawWebSocket, compressed: bool) -> list[dict[str, str]]:
    """The frames of the next WebSocket message (several when batched),
    inflated on its own when `compressed` (no context takeover)."""
    message = await ws.receive_frame()
    assert message is not None
    opcode, payload = message
    assert opcode == TEXT
    if compressed:
        payload = zlib.decompressobj(-10).decompress(payload + b"\x00\x00\xff\xff")
    return [json.loads(line) for line in payload.split(b"\n")]


@pytest.mark.parametrize(
    ("compressed", "batch"), [(False, False), (True, False), (False, True), (True, True)]
)
async def test_a_reader_whose_socket_fills_gets_every_frame_whole_and_in_order(
    start_server: StartServer, compressed: bool, batch: bool
) -> None:
    server = await start_server(
        send_queue_size=1000,
        max_body_chars=BODY_CHARS,
        max_message_bytes=4 * BODY_CHARS,
        presence_events=False,
        ws_compression=compressed,
    )
    path = f"/api/chat-api/ws/{ROOM}" + ("?batch=1" if batch else "")
    offer = DEFLATE_OFFER if compressed else ""
    async with raw_websocket(server.port, path, receive_buffer=4096, extra_headers=offer) as slow:
        greeting = await _receive(slow, compressed)
        if len(greeting) == 1:
            greeting += await _receive(slow, compressed)
        assert [frame["type"] for frame in greeting] == ["welcome", "subscribed"]
        (conn,) = server.runtime.hub.connections()
        sent: list[str] = []
        async with connect(server.url(ROOM)) as sender:
            with trio.fail_after(WAIT):
                while conn.queued < BACKLOG:
                    body = _body(len(sent))
                    await sender.send({"body": body})
                    assert (await sender.receive_type("chat"))["body"] == body
                    sent.append(body)
            received: list[str] = []
            with trio.fail_after(WAIT):
                while len(received) < len(sent):
                    received += [frame["body"] for frame in await _receive(slow, compressed)]
    assert received == sent
