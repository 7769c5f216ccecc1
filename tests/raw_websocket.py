"""A WebSocket client on a raw socket (RFC 6455 framing by hand), for what a
well-behaved client library refuses to do: send invalid UTF-8 in a text
frame, break the framing rules, stop reading while the server keeps
writing, or send bytes that are no handshake at all."""

from __future__ import annotations

import socket
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .helpers import UPGRADE_HEADERS, WAIT

TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
_MASK = b"\x37\xfa\x21\x3d"


class RawWebSocket:
    """One upgraded connection: write masked frames, parse the server's frames."""

    def __init__(self, stream: trio.SocketStream, buffered: bytes) -> None:
        self.stream = stream
        self.bytes_received = 0
        self.response_head = ""
        self._buffer = bytearray(buffered)

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        """One final, masked frame (as a client must send)."""
        await self.stream.send_all(ws_frame(opcode, payload))

    async def _read(self, count: int) -> bytes | None:
        while len(self._buffer) < count:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self._buffer += chunk
            self.bytes_received += len(chunk)
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def receive_frame(self) -> tuple[int, bytes] | None:
        """The next (opcode, payload) from the server, or None once the TCP
        connection has ended."""
        head = await self._read(2)
        if head is None:
            return None
        length = head[1] & 0x7F
        if length == 126:
            extended = await self._read(2)
            length = struct.unpack("!H", extended or b"\0\0")[0]
        elif length == 127:
            extended = await self._read(8)
            length = struct.unpack("!Q", extended or bytes(8))[0]
        payload = await self._read(length)
        if payload is None:
            return None
        return head[0] & 0x0F, payload

    async def close_code(self) -> int | None:
        """Read (and drop) frames until the server closes: the code of its
        close frame, or None if the TCP connection ended without one."""
        with trio.fail_after(WAIT):
            while (frame := await self.receive_frame()) is not None:
                opcode, payload = frame
                if opcode == CLOSE:
                    return int(struct.unpack("!H", payload[:2])[0])
        return None


def reset_on_close(stream: trio.SocketStream) -> None:
    """Make `stream`'s close a TCP reset: the peer vanishes without a close frame."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# What every browser offers (RFC 7692).
DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


def deflated(payload: bytes, window_bits: int = 10) -> bytes:
    """`payload` compressed as one permessage-deflate message (RFC 7692 7.2.1)."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


def upgrade_request(path: str = "/api/chat-api/ws/fuzz", headers: str = UPGRADE_HEADERS) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode("latin-1")


def ws_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    masked: bool = True,
    fin: bool = True,
    length: int | None = None,
    rsv1: bool = False,
) -> bytes:
    """One WebSocket frame; `length` overrides the announced payload length;
    `rsv1` marks it compressed (permessage-deflate)."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    return head + _MASK + bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection (EOF or reset)."""
    data = b""
    with trio.fail_after(WAIT):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return data
            if not chunk:
                return data
            data += chunk


async def read_until(stream: trio.SocketStream, marker: bytes) -> bytes:
    """What the server sends up to and including `marker`."""
    data = b""
    with trio.fail_after(WAIT):
        while marker not in data:
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed before {marker!r}: {data!r}"
            data += chunk
    return data


@asynccontextmanager
async def raw_websocket(
    port: int,
    path: str,
    *,
    receive_buffer: int | None = None,
    extra_headers: str = "",
    within: float = WAIT,
) -> AsyncIterator[RawWebSocket]:
    """An upgraded raw WebSocket to `path`, connected and upgraded within
    `within` seconds each; `receive_buffer` shrinks the socket's kernel
    receive buffer (SO_RCVBUF) so a client that stops reading pushes back
    on the server quickly. The 101's headers are in
    `RawWebSocket.response_head`."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    with trio.fail_after(within):
        await sock.connect(("127.0.0.1", port))
    async with trio.SocketStream(sock) as stream:
        data = b""
        with trio.fail_after(within):
            await stream.send_all(upgrade_request(path, UPGRADE_HEADERS + extra_headers))
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                assert chunk, "the server closed during the upgrade"
                data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        raw = RawWebSocket(stream, rest)
        raw.response_head = head.decode("latin-1")
        yield raw
