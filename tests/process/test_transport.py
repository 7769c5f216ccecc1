"""Hostile and broken connections against `python -m chat_service`: no byte
sequence on one connection ends the process or disturbs other clients."""

from __future__ import annotations

import contextlib
import random
import struct
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from ..helpers import UPGRADE_HEADERS, WAIT, connect
from ..raw_websocket import (
    CLOSE,
    PING,
    TEXT,
    raw_websocket,
    read_until,
    read_until_closed,
    reset_on_close,
    upgrade_request,
    ws_frame,
)
from ..server_process import ServerProcess, ready_port, server_process, service_command, service_env

_NOISE = random.Random(225)


def _noise(size: int) -> bytes:
    return bytes(_NOISE.randrange(256) for _ in range(size))


_UPGRADE = upgrade_request()
_HEADERS_WITHOUT_KEY = UPGRADE_HEADERS.replace(
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""
)

# (case, bytes sent in one write, how the HTTP answer must start). For None
# (frames that may even be valid) and b"" (a request cut short), we end our
# side and the server must close the connection.
FUZZ_CASES = [
    ("upgrade + masked frame (hypercorn#225)", _UPGRADE + ws_frame(TEXT, b"hello"), None),
    ("upgrade + unmasked frame", _UPGRADE + ws_frame(TEXT, b"hello", masked=False), None),
    ("upgrade + reserved opcode", _UPGRADE + ws_frame(0x3, b"x"), None),
    ("upgrade + fragmented ping", _UPGRADE + ws_frame(PING, b"p", fin=False), None),
    ("upgrade + 64-bit length", _UPGRADE + ws_frame(TEXT, b"x", length=1 << 62), None),
    ("upgrade + random bytes", _UPGRADE + _noise(300), None),
    ("random bytes, no handshake", _noise(2000) + b"\r\n\r\n", b"HTTP/1.1 400"),
    ("truncated request line", b"GET /api/chat-api/ws/fuzz HTT", b""),
    ("truncated headers", _UPGRADE[:60], b""),
    ("headers without the blank line", _UPGRADE[:-2], b""),
    ("200 KB header", _UPGRADE[:-2] + b"X-Big: " + b"a" * 200_000 + b"\r\n\r\n", b"HTTP/1.1 4"),
    ("200 KB request line", b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\n\r\n", b"HTTP/1.1 4"),
    (
        "bad Sec-WebSocket-Key",
        upgrade_request(headers=UPGRADE_HEADERS.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")),
        b"HTTP/1.1 400",
    ),
    ("no Sec-WebSocket-Key", upgrade_request(headers=_HEADERS_WITHOUT_KEY), b"HTTP/1.1 400"),
    (
        "bad Sec-WebSocket-Version",
        upgrade_request(headers=UPGRADE_HEADERS.replace("Version: 13", "Version: 8")),
        b"HTTP/1.1 400",
    ),
]


async def assert_serves(service: ServerProcess) -> None:
    """The process lives, and two normal clients of a fresh room chat."""
    assert service.alive(), "\n".join(service.log_lines[-30:])
    await assert_chat_works(service.port)


async def assert_chat_works(port: int) -> None:
    """Two normal clients of a fresh room chat."""
    url = f"ws://127.0.0.1:{port}/api/chat-api/ws/{uuid.uuid4().hex[:12]}"
    async with connect(url) as sender, connect(url) as reader:
        await sender.send({"body": "still here"})
        assert (await reader.receive_type("chat"))["body"] == "still here"


async def send_and_watch(
    service: ServerProcess, data: bytes, *, eof: bool = True
) -> tuple[bytes | None, int]:
    """Send `data` in one write; with `eof`, end our side and return what came
    back until the server closed, else the HTTP answer's head; None if the
    server reset the connection while we were still sending. And our local port."""
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", service.port)
    async with stream:
        local_port = stream.socket.getsockname()[1]
        try:
            await stream.send_all(data)
            if not eof:
                return await read_until(stream, b"\r\n\r\n"), local_port
            await stream.send_eof()
        except trio.BrokenResourceError:
            return None, local_port  # refused before we were done: closed all the same
        return await read_until_closed(stream), local_port


async def test_hostile_bytes_close_only_their_connection() -> None:
    async with server_process() as service:
        async with connect(service.url("bystanders")) as bystander:
            for case, data, answer in FUZZ_CASES:
                # Where no answer is due (a truncated request, or frames that
                # may be valid), the server closes once we end our side.
                reply, _ = await send_and_watch(service, data, eof=not answer)
                if answer is not None and reply is not None:
                    assert reply.startswith(answer), f"{case}: {reply[:80]!r}"
                await assert_serves(service)
            await bystander.send({"body": "unharmed"})
            assert (await bystander.receive_type("chat"))["body"] == "unharmed"


async def test_hypercorn_225_is_contained_and_logged_once_with_the_peer() -> None:
    async with server_process() as service:
        for _ in range(20):  # the race behind #225 does not lose every time
            _, port = await send_and_watch(service, _UPGRADE + ws_frame(TEXT, b"hello"))
            await assert_serves(service)
            if service.matching(f"peer=127.0.0.1:{port} "):
                break
        line = await service.wait_for_line(f"peer=127.0.0.1:{port} ")
        assert "WARNING" in line
        assert "LocalProtocolError" in line
        assert len(service.matching(f"peer=127.0.0.1:{port} ")) == 1
        assert not service.matching("Traceback")


async def test_bad_frames_after_a_real_handshake_get_their_close_code() -> None:
    cases = [
        ("unmasked frame", ws_frame(TEXT, b"{}", masked=False), 1002),
        ("reserved opcode", ws_frame(0x3, b"x"), 1002),
        ("fragmented ping", ws_frame(PING, b"p", fin=False), 1002),
        ("invalid UTF-8", ws_frame(TEXT, b"\xff\xfe"), 1007),
        ("64-bit length", ws_frame(TEXT, b"a" * 70_000, length=1 << 62), 1009),
    ]
    async with server_process() as service:
        for case, frame, code in cases:
            async with raw_websocket(service.port, "/api/chat-api/ws/fuzz") as raw:
                await raw.stream.send_all(frame)
                assert await raw.close_code() == code, case
            await assert_serves(service)


async def test_a_thousand_silent_sockets_do_not_block_a_client() -> None:
    async with server_process(HANDSHAKE_TIMEOUT="3") as service:
        silent = []
        try:
            for n in range(1000):
                with trio.fail_after(WAIT):
                    stream = await trio.open_tcp_stream("127.0.0.1", service.port)
                silent.append(stream)
                if n % 2:  # half trickle an incomplete request line (slowloris)
                    await stream.send_all(b"GET /api/chat-api/ws/sl")
            await assert_serves(service)
            async with trio.open_nursery() as nursery:
                for stream in silent:
                    nursery.start_soon(read_until_closed, stream)
        finally:
            for stream in silent:
                await stream.aclose()
        await assert_serves(service)


async def _churn_one(service: ServerProcess, n: int) -> None:
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", service.port)
    async with stream:
        await stream.send_all(upgrade_request(f"/api/chat-api/ws/churn{n % 7}"))
        await read_until(stream, b'"welcome"')
        if n % 2:
            await stream.send_all(ws_frame(CLOSE, struct.pack("!H", 1000)))
            await read_until_closed(stream)
        else:
            reset_on_close(stream)


async def _churn(service: ServerProcess, count: int) -> None:
    limit = trio.CapacityLimiter(50)

    async def one(n: int) -> None:
        async with limit:
            await _churn_one(service, n)

    async with trio.open_nursery() as nursery:
        for n in range(count):
            nursery.start_soon(one, n)


# RSS may grow this much over 10,000 connections after the warm-up: the
# allocator keeps arenas it has grown (measured: 0.2 to 1.5 MiB, levelling
# off over rounds). Leaking what one connection holds (a socket, a
# Connection, Hypercorn's streams: several KiB) would exceed it tenfold.
RSS_SLACK_KIB = 2048
# Connections before the baseline: caches, pools and lazy imports fill up,
# and the allocator's arenas reach their level. Rounds of 10,000 after 2,000
# grew RSS by 3.9, 4.2, 5.3 and 5.5 MiB in all (2026-12-04): level after
# the first, whose growth the baseline must not count.
WARM_UP = 10_000


@pytest.mark.parametrize("connections", [10_000])
async def test_churn_leaves_no_leak(connections: int) -> None:
    async with server_process() as service:
        idle_tasks = (await service.health())["tasks"]
        await _churn(service, WARM_UP)
        baseline = await service.settled(idle_tasks)
        assert baseline["tasks"] == idle_tasks
        baseline_rss = service.rss_bytes() // 1024

        await _churn(service, connections)

        after = await service.settled(idle_tasks, baseline["fds"])
        assert after["tasks"] == baseline["tasks"]
        assert after["fds"] <= baseline["fds"]
        assert service.rss_bytes() // 1024 - baseline_rss < RSS_SLACK_KIB
        await assert_serves(service)


@pytest.fixture(scope="module")
def service_port() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """One service for every generated example (sync: hypothesis runs each
    example in its own trio.run)."""
    with subprocess.Popen(
        service_command(), env=service_env({}), stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        try:
            port = next(p for line in process.stderr if (p := ready_port(line)) is not None)
            # Keep reading the log so the service never blocks on a full pipe.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            yield process, port
        finally:
            process.kill()


def _frames() -> st.SearchStrategy[bytes]:
    frame = st.builds(
        ws_frame,
        st.integers(0, 15),
        st.binary(max_size=300),
        masked=st.booleans(),
        fin=st.booleans(),
        length=st.one_of(st.none(), st.integers(0, (1 << 63) - 1)),
    )
    return st.lists(frame, min_size=1, max_size=5).map(b"".join)


async def _send_after_handshake(port: int, data: bytes) -> None:
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(_UPGRADE)
        await read_until(stream, b'"welcome"')
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(data)


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(min_size=1, max_size=4096), _frames()))
def test_generated_bytes_after_a_handshake_harm_nobody(
    service_port: tuple[subprocess.Popen[str], int], data: bytes
) -> None:
    process, port = service_port

    async def example() -> None:
        await _send_after_handshake(port, data)
        assert process.poll() is None
        await assert_chat_works(port)

    trio.run(example)
