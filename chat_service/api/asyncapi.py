"""The AsyncAPI 3.0 document of the message protocol: the two channels (the
default room and a named room), every frame in each direction with its JSON
Schema from `realtime.schemas`, and the close codes.

Operations are described from the server's side, as AsyncAPI 3.0 asks:
the server `receive`s client frames and `send`s server frames.
"""

from __future__ import annotations

from typing import Any, Final

from ..realtime.close_codes import CloseCode
from ..realtime.message import DEFAULT_ROOM
from ..realtime.schemas import CLIENT_FRAMES, NAME_SCHEMA, SERVER_FRAMES, FrameDoc
from .handshake import AUTH_DESCRIPTION, AUTHORIZATION_HEADER, QUERY_PARAMETERS, REFUSALS, WS_PATH
from .spec import OPENAPI_PATH, SERVICE_VERSION

__all__ = ["CLOSE_CODE_MEANINGS", "build_asyncapi"]

Schema = dict[str, Any]

CLOSE_CODE_MEANINGS: Final[dict[CloseCode, str]] = {
    CloseCode.NORMAL: "normal close",
    CloseCode.GOING_AWAY: "the server is shutting down: reconnect (to any instance)",
    CloseCode.PROTOCOL_ERROR: (
        "a frame that breaks RFC 6455 (unmasked, reserved opcode, fragmented control frame)"
    ),
    CloseCode.INVALID_DATA: "a text frame that is not valid UTF-8",
    CloseCode.POLICY_VIOLATION: (
        "policy violation: repeated abuse, e.g. rate limit exceeded again and again"
    ),
    CloseCode.MESSAGE_TOO_BIG: "a frame larger than MAX_MESSAGE_BYTES",
    CloseCode.INTERNAL_ERROR: "internal error in the handling of this connection",
    CloseCode.TRY_AGAIN_LATER: (
        "the server is at capacity (a new client is refused before the upgrade with "
        "HTTP 503 instead, where possible)"
    ),
    CloseCode.HEARTBEAT_TIMEOUT: (
        "heartbeat timeout: nothing received for HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT seconds"
    ),
    CloseCode.SLOW_CONSUMER: "slow consumer: the client's send queue overflowed",
    CloseCode.TOKEN_EXPIRED: (
        "(auth on) the token expired without a valid `refresh`: reconnect with a new token"
    ),
}

_CHANNELS: Final = {"defaultRoom": WS_PATH, "namedRoom": f"{WS_PATH}/{{room}}"}


def _description() -> str:
    refusals = "\n".join(
        f"- HTTP {refusal.status} `{error}`: {when}"
        for refusal in REFUSALS
        for error, when in refusal.errors.items()
    )
    close_codes = "\n".join(
        f"| {int(code)} | {meaning} |" for code, meaning in CLOSE_CODE_MEANINGS.items()
    )
    return f"""\
The chat wire protocol, version 2. Every WebSocket frame is a **text** frame
holding one JSON object (UTF-8); a binary frame is answered with an `error`
frame (`binary_not_supported`). A refused frame gets an `error` frame and the
connection stays open; only repeated abuse closes it (1008).

The upgrade request (see the OpenAPI document at {OPENAPI_PATH}) may be
refused before any WebSocket is opened, with a JSON body
`{{"error": ..., "detail": ...}}`:
{refusals}

**Batched frames.** A client that connects with `batch=1` may receive several
server messages in one text frame, separated by `\\n` (JSON text never holds a
raw newline): it splits each frame on `\\n` and handles the objects in order.
An idle server adds no delay; under load it may hold a batched client's
messages for at most BATCH_WINDOW seconds so that one frame carries many.
Without `batch=1` every frame carries exactly one message. Client frames
always carry one message.

**Rooms.** The path names the socket's first room; `subscribe` adds more
(at most MAX_ROOMS_PER_CONNECTION), `unsubscribe` leaves one. A `chat` goes
to its `room` (default: the path's), which the socket must be subscribed to.

**Sequence, history, recovery.** Every chat message gets its room's next
`seq` (1, 2, 3, ... without gap or repeat within one `epoch`) in the step
that publishes it. Each room keeps its last HISTORY_SIZE messages for
HISTORY_TTL seconds. A client that reconnects (`since`/`epoch` in the query)
or subscribes (`since` in `subscribe`) with the last `seq` it has gets
`subscribed` with `recovered: true`, then every message it missed, in order,
then the live ones, without gap or duplicate; or `recovered: false` with a
`reason` and live messages only (what history still holds is paged over
HTTP: `GET /api/chat-api/rooms/{{room}}/messages`, in the OpenAPI document).
While Redis is down, chat messages reach this instance's members only,
without `seq`, and are not kept; a recovery meanwhile gets `recovered: false`
with `reason: unavailable`.

**Guarantees.** A message never reaches a client not subscribed to its room.
Once a client has a room's `subscribed`, it receives every later message of
that room. All clients of a room receive its chat messages in one order (the
`seq` order), one sender's in the order sent. No duplicates, retries with
`client_msg_id` included. A slow client never slows the others: a client
whose send queue (SEND_QUEUE_SIZE entries) overflows is disconnected alone
(4001).

**Close codes** (also in `x-close-codes`):

| code | meaning |
|---|---|
{close_codes}
"""


def _message(frame: FrameDoc) -> Schema:
    return {
        "name": frame.key,
        "title": frame.title,
        "summary": frame.summary,
        "contentType": "application/json",
        "payload": frame.schema,
        "examples": [{"name": frame.key, "payload": frame.example}],
    }


def _channel(address: str) -> Schema:
    named = "{room}" in address
    channel: Schema = {
        "address": address,
        "title": "A named room" if named else f"The default room `{DEFAULT_ROOM}`",
        "description": (
            "The socket starts in this room and may subscribe to others. Every chat message of a "
            "room reaches every client subscribed to it, the sender included, and no other "
            "client. `presence_diff` frames of each subscribed room reach its members; "
            "`welcome`, `subscribed`, `unsubscribed`, `pong` and `error` frames reach their "
            "client alone."
        ),
        "messages": {
            frame.key: {"$ref": f"#/components/messages/{frame.key}"}
            for frame in (*CLIENT_FRAMES, *SERVER_FRAMES)
        },
        "bindings": {
            "ws": {
                "method": "GET",
                "query": {"type": "object", "properties": QUERY_PARAMETERS},
                "headers": {
                    "type": "object",
                    "properties": {"Authorization": AUTHORIZATION_HEADER},
                },
                "bindingVersion": "0.1.0",
            }
        },
    }
    if named:
        channel["parameters"] = {"room": {"description": NAME_SCHEMA["description"]}}
    return channel


def _operations(channel: str) -> Schema:
    def refs(frames: tuple[FrameDoc, ...]) -> list[Schema]:
        return [{"$ref": f"#/channels/{channel}/messages/{frame.key}"} for frame in frames]

    pong = next(frame for frame in SERVER_FRAMES if frame.key == "pong")
    ping = next(frame for frame in CLIENT_FRAMES if frame.key == "clientPing")
    return {
        f"{channel}.receive": {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": "Frames a client sends",
            "messages": refs(CLIENT_FRAMES),
        },
        f"{channel}.send": {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": "Frames the server sends",
            "messages": refs(SERVER_FRAMES),
        },
        f"{channel}.ping": {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": "A client ping, answered with a pong to that client alone",
            "messages": refs((ping,)),
            "reply": {"channel": {"$ref": f"#/channels/{channel}"}, "messages": refs((pong,))},
        },
    }


def build_asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the protocol (a new dict each call)."""
    operations: Schema = {}
    for channel in _CHANNELS:
        operations |= _operations(channel)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "chat_service messages",
            "version": SERVICE_VERSION,
            "description": _description(),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8080",
                "protocol": "ws",
                "description": "`make run`'s default; use `wss` behind TLS",
                "security": [
                    {"$ref": "#/components/securitySchemes/bearer"},
                    {"$ref": "#/components/securitySchemes/tokenQuery"},
                ],
            }
        },
        "channels": {name: _channel(address) for name, address in _CHANNELS.items()},
        "operations": operations,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": AUTH_DESCRIPTION,
                },
                "tokenQuery": {
                    "type": "httpApiKey",
                    "in": "query",
                    "name": "token",
                    "description": AUTH_DESCRIPTION,
                },
            },
            "messages": {frame.key: _message(frame) for frame in (*CLIENT_FRAMES, *SERVER_FRAMES)},
        },
        "x-close-codes": [
            {"code": int(code), "meaning": meaning} for code, meaning in CLOSE_CODE_MEANINGS.items()
        ],
    }
