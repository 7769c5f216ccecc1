"""The bare-stack baseline: the least a Quart-Trio chat app can do.

Same stack as chat_service (Quart-Trio under Hypercorn's trio worker), same
URL shape (`/api/chat-api/ws/<room>`, `batch=1`) and frame shape (a
`welcome` frame first, `{"type":"chat",...,"body":...}` to every member), so
one load generator drives both. Nothing else: no validation beyond reading
`body`, no heartbeat, no join/leave events, no slow-consumer rule (the
channels are unbounded), no drain. Each connection has a memory channel and
a sender task; a message is encoded once and put on every member's channel.
With `batch=1` the sender joins whatever waits in its channel into one frame.

Run: `PORT=8080 python bench/baseline_server.py` (HOST defaults to 127.0.0.1).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import websocket
from quart_trio import QuartTrio

app = QuartTrio(__name__)
rooms: dict[str, dict[int, trio.MemorySendChannel[str]]] = {}
ids = itertools.count()


async def _sender(outbox: trio.MemoryReceiveChannel[str], batch: bool) -> None:
    async for frame in outbox:
        if batch:
            frames = [frame]
            while True:
                try:
                    frames.append(outbox.receive_nowait())
                except trio.WouldBlock:
                    break
            frame = "\n".join(frames)
        await websocket.send(frame)


@app.websocket("/api/chat-api/ws/<room>")
async def chat(room: str) -> None:
    """Join `room`, send `welcome`, then fan out every chat frame received."""
    client_id = next(ids)
    user_id = websocket.args.get("user_id", "anonymous")
    members = rooms.setdefault(room, {})
    send_channel, receive_channel = trio.open_memory_channel[str](math.inf)
    await websocket.accept()
    send_channel.send_nowait(
        json.dumps({"type": "welcome", "client_id": client_id, "user_id": user_id, "room": room})
    )
    members[client_id] = send_channel
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_sender, receive_channel, websocket.args.get("batch") == "1")
            while True:
                data = await websocket.receive()
                request: dict[str, Any] = json.loads(data)
                frame = json.dumps(
                    {
                        "type": "chat",
                        "id": next(ids),
                        "room": room,
                        "client_id": client_id,
                        "user_id": user_id,
                        "body": request["body"],
                        "ts": int(time.time() * 1000),
                    },
                    separators=(",", ":"),
                )
                for member in members.values():
                    member.send_nowait(frame)
    finally:
        del members[client_id]


async def main() -> None:
    """Serve on $HOST:$PORT until cancelled."""
    config = HypercornConfig()
    config.bind = [f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ['PORT']}"]
    config.accesslog = None
    await serve(app, config)


if __name__ == "__main__":
    trio.run(main)
