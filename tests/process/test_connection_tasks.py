"""What an open chat connection costs the service in trio tasks."""

from __future__ import annotations

from contextlib import AsyncExitStack

from ..helpers import connect
from ..server_process import server_process

# Hypercorn's reader of the TCP connection and the app's task (the handler and
# its receive loop); a send loop only once a frame had to wait for a full
# socket, which these clients' never is. The chat WebSocket layer adds none
# (Quart's websocket machinery added two: its receiver and its route's task).
MAX_TASKS_PER_CONNECTION = 2
CLIENTS = 20


async def test_a_chat_connection_costs_at_most_two_tasks() -> None:
    async with server_process(PRESENCE_EVENTS="false") as service:
        idle_tasks = (await service.health())["tasks"]
        async with AsyncExitStack() as stack:
            for i in range(CLIENTS):
                client = await stack.enter_async_context(
                    connect(service.url("tasks", user_id=f"u{i}"))
                )
                await client.send({"type": "ping"})
                await client.receive_type("pong")  # its receive loop runs
            tasks = (await service.health())["tasks"] - idle_tasks
            assert tasks <= MAX_TASKS_PER_CONNECTION * CLIENTS
        assert (await service.settled(idle_tasks))["tasks"] == idle_tasks
