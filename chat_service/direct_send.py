"""Server frames written straight to the socket, when nothing else is being
written to it: the fast path of fan-out.

Hypercorn's way to send one WebSocket message (ASGI `send`, the stream, the
HTTP/1.1 protocol, the connection's send lock, a shielded scope, trio's
`send_all`) passes through trio's scheduler at least once per recipient.
When the connection has nothing queued and no write in progress, the frame
can instead be written with one non-blocking `write` from the task that
fans it out; only a frame the kernel does not take whole falls back to an
awaited write. The stream offers this to the app as the ASGI scope
extension `DIRECT_SEND` once the WebSocket is accepted.

A frame is encoded once for every connection it goes to: server frames are
not masked, and permessage-deflate is negotiated without context takeover
(`ws_deflate`), so a compressed frame too is the same bytes for every
connection with the same window.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING

import trio
from wsproto.connection import ConnectionState

from .ws_deflate import deflate_message

if TYPE_CHECKING:
    from collections.abc import Callable

    from wsproto.connection import Connection as WSConnection

__all__ = ["DIRECT_SEND", "DirectSend", "deflated_text_frame", "text_frame"]

# The ASGI scope extension (scope["extensions"]) under which an accepted
# WebSocket's `DirectSend` is found.
DIRECT_SEND = "chat.direct_send"

_FIN_TEXT = 0x81
_RSV1 = 0x40  # permessage-deflate: the message is compressed (RFC 7692 6)
# The last frames encoded: a message fanned out to a room is the same string
# object for every member.
_last_text: str | None = None
_last_frame = b""
_last_deflated: tuple[str | None, int] = (None, 0)
_last_deflated_frame = b""


def text_frame(text: str) -> bytes:
    """The unmasked, uncompressed, final WebSocket text frame of `text` (RFC 6455 5.2)."""
    global _last_text, _last_frame
    if text is not _last_text:
        _last_text, _last_frame = text, _frame(_FIN_TEXT, text.encode())
    return _last_frame


def deflated_text_frame(text: str, window_bits: int) -> bytes:
    """The unmasked, final WebSocket text frame of `text`, compressed as one
    permessage-deflate message without context takeover (`deflate_message`)."""
    global _last_deflated, _last_deflated_frame
    last_text, last_bits = _last_deflated
    if text is not last_text or window_bits != last_bits:
        payload = deflate_message(text.encode(), window_bits)
        _last_deflated = (text, window_bits)
        _last_deflated_frame = _frame(_FIN_TEXT | _RSV1, payload)
    return _last_deflated_frame


def _frame(first_byte: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = bytes((first_byte, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", first_byte, 126, size)
    else:
        header = struct.pack("!BBQ", first_byte, 127, size)
    return header + payload


class DirectSend:
    """Writes text frames of one accepted WebSocket without waiting.

    `encode` makes the frame of a text: `text_frame`, or with
    permessage-deflate `deflated_text_frame` at the connection's window.
    Neither keeps any state of the connection's, so a frame not written
    has changed nothing.
    """

    def __init__(
        self,
        connection: WSConnection,
        send_lock: trio.Lock,
        stream: trio.SocketStream,
        *,
        encode: Callable[[str], bytes],
    ) -> None:
        self._connection = connection
        self._send_lock = send_lock
        self._stream = stream
        self._encode = encode

    def try_send(self, text: str) -> bytes | None:
        """Write the frame of `text` now if nothing else is being written.

        None: nothing was written (a write is in progress, the connection is
        closing, or the kernel took nothing); send it the usual way. Else the
        bytes of the frame the kernel did not take (b"" if it took all),
        which must be written with `send_rest` before anything else.
        """
        if self._send_lock.locked() or self._connection.state is not ConnectionState.OPEN:
            return None
        fd = self._stream.socket.fileno()
        if fd < 0:
            return None
        data = self._encode(text)
        try:
            written = os.write(fd, data)
        except OSError:
            return None  # the kernel would block, or the socket broke: nothing was written
        return data[written:]

    async def send_rest(self, data: bytes) -> None:
        """Write `data` (what `try_send` left) as Hypercorn writes, under the
        connection's send lock; a broken socket is left for Hypercorn's
        reader to notice. Cancellation is deferred until the write ends
        (Hypercorn's rule: a frame is never cut in half)."""
        async with self._send_lock:
            with trio.CancelScope(shield=True):
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
