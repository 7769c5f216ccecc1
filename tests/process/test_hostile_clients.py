"""What browsers and attackers do, against `python -m chat_service`: floods
the server closes, permessage-deflate offers, decompression bombs, a room
reconnecting at once. Each measures the process itself (tasks, fds, RSS)."""

from __future__ import annotations

import functools
import json
import struct
import zlib
from contextlib import AsyncExitStack

import pytest
import trio

from ..helpers import WAIT, connect
from ..raw_websocket import (
    CLOSE,
    DEFLATE_OFFER,
    TEXT,
    RawWebSocket,
    deflated,
    raw_websocket,
    reset_on_close,
    ws_frame,
)
from ..server_process import ServerProcess, server_process

KiB = 1 << 10
MiB = 1 << 20
PATH = "/api/chat-api/ws/hostile"
# The service's defaults: 20 frames at once, then the 10th refusal closes.
RATE_LIMIT_BURST = 20
RATE_LIMIT_STRIKES = 10
FLOOD_FRAMES = 300  # a few hundred chat frames in one write
FLOODS = 12


async def _flood(port: int) -> tuple[list[str], int | None]:
    """Write FLOOD_FRAMES chat frames at once, then read until the server
    closes: the `error` codes received, and the close code."""
    chat = ws_frame(TEXT, json.dumps({"type": "chat", "body": "flood"}).encode())
    errors: list[str] = []
    async with raw_websocket(port, PATH) as ws:
        await ws.stream.send_all(chat * FLOOD_FRAMES)
        with trio.fail_after(WAIT):
            while (frame := await ws.receive_frame()) is not None:
                opcode, payload = frame
                if opcode == CLOSE:
                    return errors, int(struct.unpack("!H", payload[:2])[0])
                message = json.loads(payload)
                if message["type"] == "error":
                    errors.append(message["code"])
    return errors, None


async def test_flooder_reads_its_rate_limited_errors_before_1008() -> None:
    async with server_process(PRESENCE_EVENTS="false") as service:
        errors, code = await _flood(service.port)
    assert code == 1008
    # A `rate_limited` for every refusal but the closing one.
    assert errors.count("rate_limited") == RATE_LIMIT_STRIKES - 1
    assert service.error_lines() == []


async def test_server_closed_floods_leave_no_task_or_socket_behind() -> None:
    async with server_process(PRESENCE_EVENTS="false") as service:
        idle_tasks = (await service.health())["tasks"]
        await _flood(service.port)  # warm-up: lazy imports, pools
        idle = await service.settled(idle_tasks)
        assert idle["tasks"] == idle_tasks
        for _ in range(FLOODS):
            _, code = await _flood(service.port)
            assert code == 1008
        after = await service.settled(idle["tasks"], idle["fds"])
        print(f"tasks {idle['tasks']} -> {after['tasks']}, fds {idle['fds']} -> {after['fds']}")
        assert after == idle
    assert service.error_lines() == []


async def test_a_peer_that_never_reads_is_cut_off_by_the_kernel() -> None:
    # A queue that never overflows (no 4001) and a heartbeat that never ends it
    # within the test: only TCP_USER_TIMEOUT can end the blocked write.
    settings = {"SEND_QUEUE_SIZE": "10000", "MAX_BODY_CHARS": "30000", "HEARTBEAT_INTERVAL": "600"}
    settings |= {
        "TCP_USER_TIMEOUT": "1",
        "PRESENCE_EVENTS": "false",
        "RATE_LIMIT_PER_SECOND": "0",
    }
    async with server_process(**settings) as service:
        idle_tasks = (await service.health())["tasks"]
        async with connect(service.url("warm-up")) as client:
            await client.send({"body": "x"})
        idle = await service.settled(idle_tasks)
        async with raw_websocket(service.port, PATH, receive_buffer=4096) as stuck:
            await stuck.receive_frame()  # its welcome; from now on it does not read
            async with connect(service.url("hostile")) as sender:
                for _ in range(300):  # 9 MB: far more than the socket buffers hold
                    await sender.send({"body": "x" * 30_000})
                    await sender.receive_type("chat")
            # Still open on our side, never read: the kernel has ended it.
            after = await service.settled(idle_tasks, idle["fds"])
            assert after == idle
    assert service.error_lines() == []


# Idle clients per kind (plain, offering deflate) in the memory comparison.
IDLE_CLIENTS = 300
# How much more one client offering deflate may cost than a plain one, on
# average: allocator noise (measured: under 1 KiB either way). Hypercorn's
# default deflate costs about 100 KiB more; ours with context takeover
# (a compressor and a decompressor kept per connection) cost 26 KiB more.
DEFLATE_EXTRA_KIB = 4
PING = json.dumps({"type": "ping"}).encode()


async def _idle_clients(
    service: ServerProcess, stack: AsyncExitStack, offer: str, *, negotiated: bool = False
) -> int:
    """Open IDLE_CLIENTS clients, each past its welcome and the answer to a
    ping it sent (compressed both ways if deflate was `negotiated`); RSS
    growth in bytes."""
    before = service.rss_bytes()
    for _ in range(IDLE_CLIENTS):
        ws = await stack.enter_async_context(raw_websocket(service.port, PATH, extra_headers=offer))
        assert ("sec-websocket-extensions" in ws.response_head.lower()) is negotiated
        await ws.stream.send_all(
            ws_frame(TEXT, deflated(PING), rsv1=True) if negotiated else ws_frame(TEXT, PING)
        )
        with trio.fail_after(WAIT):
            while (await _receive(ws, negotiated))["type"] != "pong":
                pass
    return service.rss_bytes() - before


async def _receive(ws: RawWebSocket, compressed: bool) -> dict[str, str]:
    """The next message, inflated on its own if `compressed` (no context takeover)."""
    frame = await ws.receive_frame()
    assert frame is not None
    payload = frame[1]
    if compressed:
        payload = zlib.decompressobj(-10).decompress(payload + b"\x00\x00\xff\xff")
    return dict(json.loads(payload))


async def test_deflate_offer_is_not_answered_and_costs_what_a_plain_client_costs() -> None:
    async with server_process(PRESENCE_EVENTS="false") as service:
        async with AsyncExitStack() as stack:
            # Kept open: freed memory the next clients would reuse would favour them.
            await _idle_clients(service, stack, "")
            plain = await _idle_clients(service, stack, "")
            offering = await _idle_clients(service, stack, DEFLATE_OFFER)
    plain_kib, offering_kib = plain / IDLE_CLIENTS / KiB, offering / IDLE_CLIENTS / KiB
    print(f"RSS per idle client: plain {plain_kib:.1f} KiB, offering deflate {offering_kib:.1f}")
    assert offering_kib - plain_kib <= DEFLATE_EXTRA_KIB


async def test_with_ws_compression_an_idle_deflate_client_costs_what_a_plain_client_costs() -> None:
    async with server_process(WS_COMPRESSION="true", PRESENCE_EVENTS="false") as service:
        async with AsyncExitStack() as stack:
            await _idle_clients(service, stack, "")
            plain = await _idle_clients(service, stack, "")
            deflating = await _idle_clients(service, stack, DEFLATE_OFFER, negotiated=True)
    plain_kib, deflating_kib = plain / IDLE_CLIENTS / KiB, deflating / IDLE_CLIENTS / KiB
    print(f"RSS per idle client: plain {plain_kib:.1f} KiB, deflate {deflating_kib:.1f}")
    assert deflating_kib - plain_kib <= DEFLATE_EXTRA_KIB


async def test_with_ws_compression_deflate_is_negotiated_with_small_windows() -> None:
    async with server_process(WS_COMPRESSION="true", PRESENCE_EVENTS="false") as service:
        async with raw_websocket(service.port, PATH, extra_headers=DEFLATE_OFFER) as ws:
            assert (
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
                "client_max_window_bits=10" in ws.response_head
            )

            async def receive() -> dict[str, str]:
                return await _receive(ws, compressed=True)

            assert (await receive())["type"] == "welcome"
            assert (await receive())["type"] == "subscribed"
            chat = json.dumps({"type": "chat", "body": "squeezed " * 50}).encode()
            await ws.stream.send_all(ws_frame(TEXT, deflated(chat), rsv1=True))
            with trio.fail_after(WAIT):
                assert (await receive())["body"] == "squeezed " * 50


# A frame of about 50 KB on the wire (under MAX_MESSAGE_BYTES, 64 KiB) that
# inflates to 50 MB.
@functools.cache
def bomb() -> bytes:
    return deflated(b" " * (50 * MiB))


BOMBS = 20
# Peak RSS may grow this much over 20 bombs: what 20 plain 64 KiB frames
# cost, and allocator noise. An unbounded inflate grows it by about 1 GiB.
BOMB_RSS_SLACK = 8 * MiB


async def _bomb(port: int) -> int | None:
    async with raw_websocket(port, PATH, extra_headers=DEFLATE_OFFER) as ws:
        await ws.receive_frame()  # the welcome
        await ws.stream.send_all(ws_frame(TEXT, bomb(), rsv1=True))
        return await ws.close_code()


@pytest.mark.parametrize(("compression", "code"), [("false", 1002), ("true", 1009)])
async def test_decompression_bombs_cost_no_more_than_plain_frames(
    compression: str, code: int
) -> None:
    assert len(bomb()) < 64 * KiB
    async with server_process(WS_COMPRESSION=compression, PRESENCE_EVENTS="false") as service:
        peak = service.peak_rss_bytes()
        async with trio.open_nursery() as nursery:
            codes: list[int | None] = []

            async def one() -> None:
                codes.append(await _bomb(service.port))

            for _ in range(BOMBS):
                nursery.start_soon(one)
        growth = service.peak_rss_bytes() - peak
        print(f"peak RSS grew by {growth / MiB:.1f} MiB over {BOMBS} bombs")
        assert codes == [code] * BOMBS
        assert growth <= BOMB_RSS_SLACK
    assert service.error_lines() == []


# A room reconnecting at once (a deploy): past gc_tuning's BURST_ARRIVALS
# within its interval, so collection pauses while they arrive.
RECONNECTING_CLIENTS = 300
STORM_PATH = "/api/chat-api/ws/storm"


async def _reconnect(service: ServerProcess, i: int, in_room: trio.Semaphore) -> None:
    """Client `i` of the storm: odd ones offer permessage-deflate, as browsers
    do; each must be in the room, then get the message sent once all are,
    then vanish (every fourth with a TCP reset)."""
    compressed = i % 2 == 1
    offer = DEFLATE_OFFER if compressed else ""
    path = f"{STORM_PATH}?user_id=u{i}"
    async with raw_websocket(service.port, path, extra_headers=offer) as ws:
        assert ("permessage-deflate" in ws.response_head) == compressed
        assert (await _receive(ws, compressed))["type"] == "welcome"
        assert (await _receive(ws, compressed))["type"] == "subscribed"
        in_room.release()
        chat = await _receive(ws, compressed)
        assert (chat["type"], chat["body"]) == ("chat", "after the storm")
        if i % 4 == 0:
            reset_on_close(ws.stream)


async def test_a_room_reconnecting_at_once_is_served_whole_and_leaves_nothing_behind() -> None:
    async with server_process(WS_COMPRESSION="true", PRESENCE_EVENTS="false") as service:
        idle_tasks = (await service.health())["tasks"]
        async with raw_websocket(service.port, STORM_PATH) as warm_up:
            await warm_up.receive_frame()  # lazy imports, the room's first use
        idle = await service.settled(idle_tasks)
        in_room = trio.Semaphore(0)
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                for i in range(RECONNECTING_CLIENTS):
                    nursery.start_soon(_reconnect, service, i, in_room)
                for _ in range(RECONNECTING_CLIENTS):
                    await in_room.acquire()
                async with raw_websocket(service.port, STORM_PATH) as sender:
                    chat = json.dumps({"type": "chat", "body": "after the storm"}).encode()
                    await sender.stream.send_all(ws_frame(TEXT, chat))
        after = await service.settled(idle["tasks"], idle["fds"])
        assert after == idle
    assert service.error_lines() == []
