"""Clients for the tests: real WebSockets (trio-websocket) and raw HTTP."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from chat_service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from chat_service.runtime import ChatRuntime

# Every wait in a test is bounded, so a hang fails fast instead of eating CI time.
WAIT = 10.0

UPGRADE_HEADERS = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


@dataclass
class RunningServer:
    """A chat_service instance serving on a real socket."""

    runtime: ChatRuntime
    port: int

    def url(self, room: str | None = None, **query: str) -> str:
        path = "/api/chat-api/ws" + (f"/{room}" if room is not None else "")
        suffix = f"?{urlencode(query)}" if query else ""
        return f"ws://127.0.0.1:{self.port}{path}{suffix}"


class Client:
    """A chat client: JSON frames in and out, every wait bounded."""

    def __init__(self, ws: WebSocketConnection, stream: trio.SocketStream | None = None) -> None:
        self.ws = ws
        self.stream = stream
        self.welcome: dict[str, Any] = {}
        self.subscribed: dict[str, Any] = {}
        self._lines: list[str] = []  # the rest of a batched frame (batch=1)

    @property
    def client_id(self) -> str:
        return str(self.welcome["client_id"])

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        await self.ws.send_message(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def receive_raw(self) -> str:
        with trio.fail_after(WAIT):
            message = await self.ws.get_message()
        assert isinstance(message, str)
        return message

    async def receive(
        self, *, skip_pings: bool = True, skip_presence: bool = True
    ) -> dict[str, Any]:
        """The next frame (of a batched one too); heartbeat pings and presence
        diffs (which come on their own clock) are skipped unless asked for."""
        while True:
            if not self._lines:
                self._lines = (await self.receive_raw()).split("\n")
            frame: dict[str, Any] = json.loads(self._lines.pop(0))
            if skip_pings and frame["type"] == "ping":
                continue
            if skip_presence and frame["type"] == "presence_diff":
                continue
            return frame

    async def receive_type(self, kind: str) -> dict[str, Any]:
        """The next frame of type `kind`, skipping presence diffs and pings."""
        while True:
            frame = await self.receive(skip_presence=False)
            if frame["type"] == kind:
                return frame
            assert frame["type"] == "presence_diff", frame

    async def receive_presence(self, room: str | None = None) -> dict[str, Any]:
        """The next `presence_diff` (of `room`, if given); nothing else may come first."""
        while True:
            frame = await self.receive_type("presence_diff")
            if room is None or frame["room"] == room:
                return frame

    async def sync(self) -> None:
        """Round-trip a ping: every frame queued for us before it has arrived
        once this returns, and `receive` has consumed none of them."""
        await self.send({"type": "ping", "data": "sync"})

    async def drain_until_sync(self, *, skip_presence: bool = True) -> list[dict[str, Any]]:
        """Every frame (but pings, and presence diffs unless asked for) that
        arrives before the pong to `sync()`."""
        await self.sync()
        frames = []
        while (frame := await self.receive(skip_presence=skip_presence)) != {
            "type": "pong",
            "data": "sync",
        }:
            frames.append(frame)
        return frames

    async def reset(self) -> None:
        """Vanish as a phone that lost its network does: a TCP reset, no
        close frame. The client is unusable afterwards."""
        assert self.stream is not None
        self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()

    async def closed_code(self, *, within: float = WAIT) -> int:
        """Wait (at most `within` seconds) for the server to close this
        WebSocket; its close code."""
        with trio.fail_after(within):
            try:
                while True:
                    await self.ws.get_message()
            except ConnectionClosed as closed:
                return int(closed.reason.code)


async def wait_for_join(client: Client, user_id: str) -> dict[str, Any]:
    """Read presence diffs until one says `user_id` joined; that diff."""
    while True:
        diff = await client.receive_presence()
        if user_id in [join["user_id"] for join in diff["joins"]]:
            return diff


async def wait_for_leave(client: Client, user_id: str) -> dict[str, Any]:
    """Read presence diffs until one says `user_id` left; that diff."""
    while True:
        diff = await client.receive_presence()
        if {"user_id": user_id} in diff["leaves"]:
            return diff


@asynccontextmanager
async def connect(
    url: str, *, local_address: str | None = None, **kwargs: Any
) -> AsyncIterator[Client]:
    """A client connected to `url` (from `local_address`, e.g. 127.0.0.2 to
    look like another machine), past its `welcome` frame and its path
    room's `subscribed` frame (kept as `welcome` and `subscribed`)."""
    parts = urlsplit(url)
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    assert parts.hostname is not None
    assert parts.port is not None
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream(
                parts.hostname, parts.port, local_address=local_address
            )
        # We own the TCP stream: trio-websocket's client leaves it open after
        # a close the server started (it waits for a TCP close, then never
        # closes its own socket).
        try:
            async with stream:
                with trio.fail_after(WAIT):
                    ws = await wrap_client_stream(
                        nursery, stream, parts.hostname, resource, **kwargs
                    )
                client = Client(ws, stream)
                try:
                    client.welcome = await client.receive()
                    assert client.welcome["type"] == "welcome", client.welcome
                    client.subscribed = await client.receive()
                    assert client.subscribed["type"] == "subscribed", client.subscribed
                    yield client
                finally:
                    with trio.move_on_after(WAIT):
                        await ws.aclose()
        finally:
            # Only after the stream is closed: cancelling first would make its
            # aclose raise Cancelled, which the nursery then swallows along
            # with whatever the test raised.
            nursery.cancel_scope.cancel()


async def raw_request(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the HTTP status, headers and body of the answer."""
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                body += chunk
            return int(lines[0].split(" ")[1]), headers, body


async def raw_upgrade(
    port: int, path: str, extra_headers: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """A WebSocket upgrade request on a raw socket; the HTTP answer."""
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\n{UPGRADE_HEADERS}{extra_headers}\r\n"
    return await raw_request(port, request.encode("latin-1"))


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    """Every sample of GET /metrics on `port`, by name and labels."""
    status, headers, body = await raw_request(
        port, b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    assert status == 200
    assert headers["content-type"] == METRICS_CONTENT_TYPE
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a labelled counter that never moved."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def get_json(
    port: int, path: str, extra_headers: str = ""
) -> tuple[int, dict[str, str], Any]:
    """A plain GET of `path`; the HTTP status, headers and JSON body of the answer."""
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra_headers}Connection: close\r\n\r\n"
    status, headers, body = await raw_request(port, request.encode("latin-1"))
    return status, headers, json.loads(body)


async def room_history(
    port: int, room: str, *, limit: int = 100, extra_headers: str = ""
) -> list[dict[str, Any]]:
    """Every message `room`'s history holds, oldest first, paged backwards
    through GET /api/chat-api/rooms/{room}/messages from the newest; each
    page must be of the same epoch."""
    messages: list[dict[str, Any]] = []
    cursor = ""
    epoch = None
    while True:
        path = f"/api/chat-api/rooms/{room}/messages?limit={limit}{cursor}"
        status, _, page = await get_json(port, path, extra_headers)
        assert status == 200, page
        assert epoch is None or page["epoch"] == epoch, "the history was lost while paging"
        epoch = page["epoch"]
        messages = page["messages"] + messages
        if not page["has_more"]:
            assert page["next_before"] is None
            return messages
        cursor = f"&before={page['next_before']}"
