"""A whole room reconnecting at once (a deploy): the service in its own
process on the defaults, a thousand raw WebSocket clients joining one room
together."""

from __future__ import annotations

import json
import math
from typing import Any

import trio

from ..raw_websocket import CLOSE, TEXT, RawWebSocket, raw_websocket
from ..server_process import server_process

# Four times the default send queue: version 1 sent every member one `join`
# frame per newcomer, and cut off all of them (4001).
STORM_CLIENTS = 1000
# The whole storm, joins and the diffs that follow, on a 2-core machine.
STORM_DEADLINE = 120.0


async def next_frame(ws: RawWebSocket) -> dict[str, Any]:
    """The next text frame as JSON; a close frame or EOF fails the test."""
    received = await ws.receive_frame()
    assert received is not None, "connection ended"
    opcode, payload = received
    assert opcode != CLOSE, f"closed: {payload!r}"
    frame: dict[str, Any] = json.loads(payload)
    return frame


async def test_a_thousand_clients_joining_at_once_are_all_served() -> None:
    """On the defaults: nobody is closed, each client gets a few diffs (at
    most one per interval), and the last one everybody gets says 1,000."""
    diff_counts: list[int] = []
    everyone_counted = trio.Event()

    async def client(port: int, n: int) -> None:
        # A SYN the kernel's queue dropped is sent again after 1, 3, 7... s:
        # under a storm, a connect may take longer than a test's usual wait.
        path = f"/api/chat-api/ws/storm?user_id=u{n}"
        async with raw_websocket(port, path, within=STORM_DEADLINE) as ws:
            assert (await next_frame(ws))["type"] == "welcome"
            assert (await next_frame(ws))["type"] == "subscribed"
            diffs = 0
            while True:
                frame = await next_frame(ws)
                if frame["type"] == "ping":
                    continue
                assert frame["type"] == "presence_diff", frame
                diffs += 1
                if frame["users"] == STORM_CLIENTS:
                    break
            diff_counts.append(diffs)
            if len(diff_counts) == STORM_CLIENTS:
                everyone_counted.set()
            await everyone_counted.wait()
            # Still open, and no diff after the last: the next frame is our pong.
            await ws.send_frame(TEXT, b'{"type":"ping","data":"alive"}')
            while (frame := await next_frame(ws))["type"] == "ping":
                pass
            assert frame == {"type": "pong", "data": "alive"}

    async with server_process() as service:
        started = trio.current_time()
        with trio.fail_after(STORM_DEADLINE):
            async with trio.open_nursery() as nursery:
                for n in range(STORM_CLIENTS):
                    nursery.start_soon(client, service.port, n)
        elapsed = trio.current_time() - started
        assert service.matching("slow consumer") == []
    assert len(diff_counts) == STORM_CLIENTS
    # PRESENCE_INTERVAL's default: at most one diff per second per member.
    assert max(diff_counts) <= math.ceil(elapsed) + 1, (max(diff_counts), elapsed)
