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
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING

import trio
from wsproto.connection import ConnectionState
from wsproto.events import TextMessage

if TYPE_CHECKING:
    from wsproto.connection import Connection as WSConnection

__all__ = ["DIRECT_SEND", "DirectSend", "text_frame"]

# The ASGI scope extension (scope["extensions"]) under which an accepted
# WebSocket's `DirectSend` is found.
DIRECT_SEND = "chat.direct_send"

_FIN_TEXT = 0x81
# The last frame encoded: a message fanned out to a room is the same string
# object for every member, and an uncompressed server frame is the same
# bytes for every one of them (server frames are not masked).
_last_text: str | None = None
_last_frame = b""


def text_frame(text: str) -> bytes:
    """The unmasked, uncompressed, final WebSocket text frame of `text` (RFC 6455 5.2)."""
    global _last_text, _last_frame
    if text is _last_text:
        return _last_frame
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((_FIN_TEXT, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    frame = header + payload
    _last_text, _last_frame = text, frame
    return frame


class DirectSend:
    """Writes text frames of one accepted WebSocket without waiting.

    `plain`: no extension was negotiated (the frame bytes are the same as
    for any other such connection); else each frame goes through the
    connection's wsproto state (permessage-deflate's compressor).
    """

    def __init__(
        self,
        connection: WSConnection,
        send_lock: trio.Lock,
        stream: trio.SocketStream,
        *,
        plain: bool,
    ) -> None:
        self._connection = connection
        self._send_lock = send_lock
        self._stream = stream
        self._plain = plain

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
        data = text_frame(text) if self._plain else self._connection.send(TextMessage(text))
        try:
            written = os.write(fd, data)
        except OSError:
            # The kernel would block, or the socket broke: nothing was written;
            # a compressed frame, though, has advanced the compressor.
            return None if self._plain else data
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
