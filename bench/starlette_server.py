"""The second reference server: Starlette + uvicorn + broadcaster.

The stack most Python teams would pick for a chat server instead of ours:
Starlette under uvicorn (uvloop, httptools, `websockets`' sans-I/O protocol,
which is what uvicorn's `auto` picks when `websockets` is installed), rooms
as broadcaster channels: its memory backend for one instance, its Redis
backend when $REDIS_URL is set (several instances on one Redis). Written as
broadcaster's README writes its chat room: one task publishes what the
client sends, the other forwards what the channel delivers, one
`send_text` per frame.

Same URL (`/api/chat-api/ws/<room>?user_id=...`) and frame shape as
chat_service and bench/baseline_server.py (a `welcome` frame once
subscribed, then `{"type":"chat",...,"body":...}` compact JSON to every
member), so the same load generator drives it. It ignores `batch=1`, as a
Starlette app that never heard of it would: in the batched scenarios its
figures are the unbatched stack's. Nothing else: no validation beyond
reading `body`, no heartbeat of its own, no join/leave events, no
slow-consumer rule (broadcaster's queues are unbounded), no drain.

Runs from its own virtualenv (bench/.venv-starlette, `make bench-deps`):
`PORT=8080 bench/.venv-starlette/bin/python bench/starlette_server.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress

import anyio
import uvicorn
from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

broadcast = Broadcast(os.environ.get("REDIS_URL") or "memory://")
ids = itertools.count()
# broadcaster's subscribe() awaits the backend's SUBSCRIBE for a channel's
# first subscriber before it records it: a second subscriber entering during
# that await records itself over the first, whose queue then gets nothing.
# One entry at a time per room (only the Redis backend ever waits here).
entering = defaultdict[str, asyncio.Lock](asyncio.Lock)


async def chat(websocket: WebSocket) -> None:
    """Join the path's room, send `welcome`, then relay chat frames both ways."""
    room = websocket.path_params["room"]
    client_id = next(ids)
    user_id = websocket.query_params.get("user_id", "anonymous")
    await websocket.accept()
    async with anyio.create_task_group() as tasks:

        async def receive_then_stop() -> None:
            await _publish_received(websocket, room, client_id, user_id)
            tasks.cancel_scope.cancel()

        tasks.start_soon(receive_then_stop)
        await _forward(websocket, room, client_id, user_id)


async def _publish_received(websocket: WebSocket, room: str, client_id: int, user_id: str) -> None:
    """Publish each chat the client sends to its room, encoded once, until it disconnects."""
    with suppress(WebSocketDisconnect):
        async for data in websocket.iter_text():
            frame = json.dumps(
                {
                    "type": "chat",
                    "id": next(ids),
                    "room": room,
                    "client_id": client_id,
                    "user_id": user_id,
                    "body": json.loads(data)["body"],
                    "ts": int(time.time() * 1000),
                },
                separators=(",", ":"),
            )
            await broadcast.publish(channel=room, message=frame)


async def _forward(websocket: WebSocket, room: str, client_id: int, user_id: str) -> None:
    """Subscribe to the room, say `welcome`, then send every frame it delivers."""
    async with AsyncExitStack() as stack:
        async with entering[room]:
            subscriber = await stack.enter_async_context(broadcast.subscribe(channel=room))
        welcome = {"type": "welcome", "client_id": client_id, "user_id": user_id, "room": room}
        with suppress(WebSocketDisconnect):
            await websocket.send_text(json.dumps(welcome))
            while True:
                event = await subscriber.get()
                await websocket.send_text(event.message)


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    async with broadcast:
        yield


app = Starlette(routes=[WebSocketRoute("/api/chat-api/ws/{room}", chat)], lifespan=lifespan)


if __name__ == "__main__":
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ["PORT"]),
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        log_level="warning",
        access_log=False,
    )
