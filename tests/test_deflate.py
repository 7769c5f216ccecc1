"""permessage-deflate as negotiated with WS_COMPRESSION: no context takeover
either way (every message stands alone), the window the client asked for,
and a room where plain and compressing clients each get every message in
their own encoding (test_direct_send: also when the socket fills)."""

from __future__ import annotations

import json
import secrets
import zlib

import trio

from .conftest import StartServer
from .helpers import WAIT, connect
from .raw_websocket import TEXT, RawWebSocket, deflated, raw_websocket, ws_frame

ROOM = "squeezed"
PATH = f"/api/chat-api/ws/{ROOM}"
MESSAGES = 5
# Browsers' offer; a client asking for a 9-bit server window; nothing.
OFFERS = {
    "browser": "permessage-deflate; client_max_window_bits",
    "small-window": "permessage-deflate; client_max_window_bits; server_max_window_bits=9",
    "plain": None,
}
WINDOW_BITS = {"browser": 10, "small-window": 9}


def _body(n: int) -> str:
    # Repeats 700 characters apart: inflating with a window smaller than
    # the one the server compressed with fails.
    noise = secrets.token_hex(350)
    return f"{n}:{noise}{noise}"


async def _receive(ws: RawWebSocket, window_bits: int | None) -> dict[str, object]:
    """The next message, inflated (when compressed) with a fresh inflater of
    `window_bits`: without context takeover each message stands alone."""
    frame = await ws.receive_frame()
    assert frame is not None
    opcode, payload = frame
    assert opcode == TEXT
    if window_bits is not None:
        payload = zlib.decompressobj(-window_bits).decompress(payload + b"\x00\x00\xff\xff")
    message: dict[str, object] = json.loads(payload)
    return message


async def test_each_client_of_a_room_gets_every_message_in_its_own_encoding(
    start_server: StartServer,
) -> None:
    server = await start_server(ws_compression=True, presence_events=False)
    async with trio.open_nursery() as nursery:
        clients: dict[str, RawWebSocket] = {}
        for name, offer in OFFERS.items():
            header = "" if offer is None else f"Sec-WebSocket-Extensions: {offer}\r\n"
            clients[name] = await nursery.start(_hold, server.port, header)
        head = clients["browser"].response_head.lower()
        assert "server_no_context_takeover" in head
        assert "client_no_context_takeover" in head
        assert "server_max_window_bits=9" in clients["small-window"].response_head
        assert "sec-websocket-extensions" not in clients["plain"].response_head.lower()
        for name, ws in clients.items():
            bits = WINDOW_BITS.get(name)
            assert [(await _receive(ws, bits))["type"] for _ in range(2)] == [
                "welcome",
                "subscribed",
            ]
        bodies = [_body(n) for n in range(MESSAGES)]
        async with connect(server.url(ROOM)) as sender:
            for body in bodies:
                await sender.send({"body": body})
            with trio.fail_after(WAIT):
                for name, ws in clients.items():
                    received = [await _receive(ws, WINDOW_BITS.get(name)) for _ in bodies]
                    assert [message["body"] for message in received] == bodies, name
        nursery.cancel_scope.cancel()


async def _hold(port: int, header: str, *, task_status: trio.TaskStatus[RawWebSocket]) -> None:
    async with raw_websocket(port, PATH, extra_headers=header) as ws:
        task_status.started(ws)
        await trio.sleep_forever()


async def test_compressed_messages_from_a_client_are_each_inflated_on_their_own(
    start_server: StartServer,
) -> None:
    server = await start_server(ws_compression=True, presence_events=False)
    offer = f"Sec-WebSocket-Extensions: {OFFERS['browser']}\r\n"
    async with raw_websocket(server.port, PATH, extra_headers=offer) as ws:
        for _ in range(2):  # welcome, subscribed
            await _receive(ws, 10)
        bodies = [_body(n) for n in range(MESSAGES)]
        for body in bodies:  # each compressed by a fresh compressor, as the server asked
            chat = json.dumps({"type": "chat", "body": body}).encode()
            await ws.stream.send_all(ws_frame(TEXT, deflated(chat), rsv1=True))
        with trio.fail_after(WAIT):
            received = [await _receive(ws, 10) for _ in bodies]
    assert [message["body"] for message in received] == bodies
