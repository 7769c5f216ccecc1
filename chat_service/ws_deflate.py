"""permessage-deflate (RFC 7692) as this service offers it: no context
takeover either way, small windows, a small compressor, and an inflate that
stops at the message size limit.

With no context takeover (the server may ask for both directions, RFC 7692
7.1.1), no zlib state lives between messages: an idle connection costs what
a plain one costs, and a message compresses to the same bytes for every
connection with the same window (`deflate_message`), so a room's message is
compressed once, not once per member.

wsproto's extension inflates a frame in one call, whatever it grows to: a
60 KB frame of zeros becomes 60 MB before any size check. `BoundedDeflate`
inflates at most `max_message_bytes` (plus one byte, to tell "too big")
per message and answers more with 1009, so a compressed message never
costs more memory than a plain one.
"""

from __future__ import annotations

import zlib
from contextvars import ContextVar

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

__all__ = ["INFLATE_LIMIT", "BoundedDeflate", "deflate_message"]

# The window of our compressor, and of the client's where it lets us choose
# (it offers `client_max_window_bits`): 1 KiB of history still finds the
# repeats within one chat frame, and costs 2 KiB per buffer instead of 32.
WINDOW_BITS = 10
# zlib's memLevel for our compressor: its hash table and pending buffer are
# 128 KiB at the default (8), 8 KiB at 4, for a few percent less compression.
MEM_LEVEL = 4
_LARGEST_WINDOW_BITS = 15

# The largest message a stream's extension may inflate; set by the stream
# around the handshake, which creates the extension (Hypercorn creates it
# without arguments).
INFLATE_LIMIT: ContextVar[int] = ContextVar("INFLATE_LIMIT")

# The payloads compressed last, by window, up to this many bytes of them: a
# room's message reaches many connections through Hypercorn's path too,
# interleaved with other messages.
_RECENT_BYTES = 256 * 1024
_recent: dict[tuple[int, bytes], bytes] = {}
_recent_bytes = 0


def deflate_message(payload: bytes, window_bits: int) -> bytes:
    """`payload` compressed as one whole permessage-deflate message with a
    fresh compressor of `window_bits` (no context takeover), its trailing
    0x00 0x00 0xff 0xff removed (RFC 7692 7.2.1)."""
    global _recent_bytes
    key = (window_bits, payload)
    compressed = _recent.get(key)
    if compressed is not None:
        return compressed
    compressor = zlib.compressobj(
        zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits, memLevel=MEM_LEVEL
    )
    compressed = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    _recent[key] = compressed
    _recent_bytes += len(payload) + len(compressed)
    while _recent_bytes > _RECENT_BYTES:  # a payload larger than all of it goes too
        oldest = next(iter(_recent))
        _recent_bytes -= len(oldest[1]) + len(_recent.pop(oldest))
    return compressed


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate without context takeover, with small windows and
    a bounded inflate.

    Created by Hypercorn's handshake with no arguments; the inflate bound
    is `INFLATE_LIMIT` at that moment. Its decompressor exists only while a
    compressed message is being received; it keeps no compressor.
    """

    def __init__(self) -> None:
        super().__init__(
            client_no_context_takeover=True,
            client_max_window_bits=WINDOW_BITS,
            server_no_context_takeover=True,
            server_max_window_bits=WINDOW_BITS,
        )
        self._limit = INFLATE_LIMIT.get()
        self._inflated = 0

    def accept(self, offer: str) -> bool | str | None:
        """Accept `offer`, limiting the client's window only where the offer
        allows it; a client that says nothing compresses with 15 bits."""
        if "client_max_window_bits" not in offer:
            self.client_max_window_bits = _LARGEST_WINDOW_BITS
        return super().accept(offer)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        """Inflate `data` up to the message's remaining allowance; 1009 past it."""
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        """End the frame; at the end of a compressed message, inflate its
        tail (bounded like the rest) and start the next message's count."""
        if not fin or not self._inbound_compressed or not self._inbound_is_compressible:
            return super().frame_inbound_complete(proto, fin)
        tail = self._inflate(b"\x00\x00\xff\xff")  # RFC 7692 7.2.2: the stripped tail
        self._inflated = 0
        self._inbound_compressed = None
        if self.client_no_context_takeover:  # we are the server: the client's setting
            self._decompressor = None
        return tail

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        assert self._decompressor is not None
        allowance = self._limit - self._inflated
        try:
            out = self._decompressor.decompress(data, allowance + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self._limit or self._decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        """Compress a whole message with `deflate_message`; a fragmented one
        as the base class does, with a compressor of MEM_LEVEL."""
        if fin and opcode in (Opcode.TEXT, Opcode.BINARY):
            payload = deflate_message(bytes(data), self.server_max_window_bits)
            return RsvBits(True, rsv.rsv2, rsv.rsv3), payload
        if self._compressor is None and opcode in (Opcode.TEXT, Opcode.BINARY):
            self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION,
                zlib.DEFLATED,
                -self.server_max_window_bits,
                memLevel=MEM_LEVEL,
            )
        return super().frame_outbound(proto, opcode, rsv, data, fin)
