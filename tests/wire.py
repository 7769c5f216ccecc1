"""Raw bytes of the WebSocket handshake and frames, for clients that misbehave."""

from __future__ import annotations

import struct

import trio

from .helpers import UPGRADE_HEADERS, WAIT

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
_MASK = b"\x37\xfa\x21\x3d"


def upgrade_request(path: str = "/api/chat-api/ws/fuzz", headers: str = UPGRADE_HEADERS) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode("latin-1")


def ws_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    masked: bool = True,
    fin: bool = True,
    length: int | None = None,
) -> bytes:
    """One WebSocket frame; `length` overrides the announced payload length."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
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


async def read_close_code(stream: trio.SocketStream, data: bytes = b"") -> int:
    """The code of the close frame the server sends next (frames before it
    skipped); `data` is what was already read of those frames."""
    with trio.fail_after(WAIT):
        while True:
            while len(data) >= 2 and len(data) >= _frame_size(data):
                if data[0] & 0x0F == OP_CLOSE:
                    return int(struct.unpack("!H", data[2:4])[0])
                data = data[_frame_size(data) :]
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed without a close frame: {data!r}"
            data += chunk


def _frame_size(data: bytes) -> int:
    """The size of the unmasked server frame at the start of `data`
    (a large number while its header is incomplete)."""
    size = data[1] & 0x7F
    if size == 126:
        return 4 + int(struct.unpack("!H", data[2:4])[0]) if len(data) >= 4 else 1 << 62
    if size == 127:
        return 10 + int(struct.unpack("!Q", data[2:10])[0]) if len(data) >= 10 else 1 << 62
    return 2 + size
