"""The wire protocol's frames as JSON Schema: the one description of their shape.

The AsyncAPI document (`chat_service.api.asyncapi`) publishes these schemas
and examples. Tests hold the code to them: `parse_client_frame` accepts
exactly the client frames `CLIENT_FRAME_SCHEMA` accepts, and every frame the
server sends validates against its server-frame schema. What a schema cannot
say is the parser's alone: JSON syntax (`invalid_json`), duplicate keys and
unpaired surrogates (`invalid_message`), and a `MAX_BODY_CHARS` other than
the default, which is the one the schemas carry.

The schemas use only keywords that mean the same in JSON Schema draft-07
(AsyncAPI 3.0's default schema format) and 2020-12 (OpenAPI 3.1's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..config import Config
from .message import (
    MAX_CLIENT_MSG_ID,
    MAX_EPOCH_CHARS,
    MAX_SEQ,
    NAME_PATTERN,
    PROTOCOL_VERSION,
    ErrorCode,
)

__all__ = [
    "CLIENT_FRAMES",
    "CLIENT_FRAME_SCHEMA",
    "DEFAULT_MAX_BODY_CHARS",
    "ERROR_CODE_MEANINGS",
    "MEMBER_SCHEMA",
    "NAME_SCHEMA",
    "SERVER_FRAMES",
    "FrameDoc",
]

Schema = dict[str, Any]

DEFAULT_MAX_BODY_CHARS: Final = Config().max_body_chars

NAME_SCHEMA: Final[Schema] = {
    "type": "string",
    "pattern": NAME_PATTERN,
    "description": "1 to 64 characters of A-Z a-z 0-9 . _ -",
}

ERROR_CODE_MEANINGS: Final[dict[ErrorCode, str]] = {
    ErrorCode.INVALID_JSON: "the text frame is not one JSON value",
    ErrorCode.INVALID_MESSAGE: (
        "not a JSON object; a non-string `type`; a chat frame whose `body` is missing, empty or "
        "not a string; a `client_msg_id` that is not a string of at most "
        f"{MAX_CLIENT_MSG_ID} characters; a duplicate key; unpaired surrogates"
    ),
    ErrorCode.UNKNOWN_TYPE: (
        "`type` is a string other than `chat`, `subscribe`, `unsubscribe`, `ping`, `pong` or "
        "`refresh`"
    ),
    ErrorCode.BODY_TOO_LONG: "`body` is longer than MAX_BODY_CHARS characters",
    ErrorCode.RATE_LIMITED: "the client sent faster than the rate limit allows",
    ErrorCode.BINARY_NOT_SUPPORTED: "a binary frame: frames are JSON in text frames",
    ErrorCode.INVALID_ROOM: "a `room` that is not 1 to 64 characters of A-Z a-z 0-9 . _ -",
    ErrorCode.NOT_SUBSCRIBED: (
        "a `chat` to, or an `unsubscribe` from, a room this socket is not subscribed to"
    ),
    ErrorCode.TOO_MANY_ROOMS: "a `subscribe` past MAX_ROOMS_PER_CONNECTION rooms",
    ErrorCode.FORBIDDEN_ROOM: (
        "(auth on) a `subscribe` or `chat` to a room the token's `rooms` claim does not cover"
    ),
    ErrorCode.INVALID_TOKEN: (
        "a `refresh` whose token is not valid (as at the upgrade), is for another `sub`, or "
        "comes while auth is off; the connection keeps its old token and may try again"
    ),
}


@dataclass(frozen=True, slots=True)
class FrameDoc:
    """One message of the protocol, as the API documents describe it.

    Attributes:
        key: its name in the documents (unique across both directions).
        title: a short human name.
        summary: when it is sent and what reaches whom.
        schema: the JSON Schema of its JSON object.
        example: an instance of `schema`.
    """

    key: str
    title: str
    summary: str
    schema: Schema
    example: dict[str, Any]


def _frame(kind: str, properties: Schema, *, optional: tuple[str, ...] = ()) -> Schema:
    """A server frame: exactly `type` and `properties`, all required but `optional`."""
    return {
        "type": "object",
        "properties": {"type": {"const": kind}} | properties,
        "required": ["type", *(name for name in properties if name not in optional)],
        "additionalProperties": False,
    }


_TS: Final[Schema] = {"type": "integer", "description": "Unix time in milliseconds"}
_EPOCH: Final[Schema] = {
    "type": "string",
    "maxLength": MAX_EPOCH_CHARS,
    "description": "opaque; changes whenever the room's history and counter were lost",
}
_SEQ: Final[Schema] = {
    "type": "integer",
    "minimum": 0,
    "maximum": MAX_SEQ,
    "description": "the room's sequence number: 1, 2, 3, ... within one epoch",
}
_SINCE: Final[Schema] = {
    "type": ["object", "null"],
    "properties": {"epoch": _EPOCH, "seq": _SEQ},
    "required": ["epoch", "seq"],
    "description": (
        "recover from here: the `epoch` and the last `seq` the client has of the room; "
        "null is the same as leaving it out"
    ),
}
_USERS: Final[Schema] = {
    "type": "integer",
    "minimum": 0,
    "description": "distinct users in the room, across the cluster",
}
MEMBER_SCHEMA: Final[Schema] = {
    "type": "object",
    "properties": {
        "user_id": NAME_SCHEMA,
        "connections": {"type": "integer", "minimum": 1, "description": "their open connections"},
    },
    "required": ["user_id", "connections"],
    "additionalProperties": False,
}
_PRESENCE: Final[Schema] = {
    "type": "object",
    "properties": {
        "users": _USERS,
        "members": {
            "type": "array",
            "items": MEMBER_SCHEMA,
            "description": "up to PRESENCE_LIST_MAX (default 100) of them, by user_id",
        },
    },
    "required": ["users", "members"],
    "additionalProperties": False,
}
_CLIENT_ID: Final[Schema] = {"type": "string", "description": "this connection's id"}
_EXP: Final[Schema] = {"type": "integer", "description": "the token's `exp`, Unix seconds"}


def _token_event(kind: str, key: str, summary: str) -> FrameDoc:
    """A live-expiry frame: `kind` and the connection's token's `exp`."""
    return FrameDoc(
        key=key,
        title=kind.replace("_", " ").capitalize(),
        summary=summary,
        schema=_frame(kind, {"exp": _EXP}),
        example={"type": kind, "exp": 1767229200},
    )


CLIENT_FRAMES: Final[tuple[FrameDoc, ...]] = (
    FrameDoc(
        key="chatRequest",
        title="Chat request",
        summary=(
            "Say something in the room: every member receives it as a `chat` frame, the sender "
            "included. Unknown fields are ignored."
        ),
        schema={
            "type": "object",
            "properties": {
                "type": {"const": "chat", "description": "may be left out"},
                "body": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": DEFAULT_MAX_BODY_CHARS,
                    "description": (
                        "at most MAX_BODY_CHARS characters (default "
                        f"{DEFAULT_MAX_BODY_CHARS}); longer gets `body_too_long`"
                    ),
                },
                "client_msg_id": {
                    "type": ["string", "null"],
                    "maxLength": MAX_CLIENT_MSG_ID,
                    "description": (
                        "echoed in the `chat` frame; null is the same as leaving it out. A retry "
                        "with the same id (same user, same room) is not published twice: the "
                        "sender gets the original back with `duplicate: true`"
                    ),
                },
                "room": NAME_SCHEMA
                | {"description": "a room this socket is subscribed to (default: the path's)"},
            },
            "required": ["body"],
        },
        example={"type": "chat", "room": "general", "body": "hello", "client_msg_id": "c-1"},
    ),
    FrameDoc(
        key="subscribe",
        title="Subscribe",
        summary=(
            "Join another room on this socket (at most MAX_ROOMS_PER_CONNECTION): answered with "
            "`subscribed`, then every message of the room; with `since`, first the ones missed."
        ),
        schema={
            "type": "object",
            "properties": {"type": {"const": "subscribe"}, "room": NAME_SCHEMA, "since": _SINCE},
            "required": ["type", "room"],
        },
        example={"type": "subscribe", "room": "random", "since": {"epoch": "9c1e", "seq": 41}},
    ),
    FrameDoc(
        key="unsubscribe",
        title="Unsubscribe",
        summary="Leave a room: answered with `unsubscribed`; no message of it follows.",
        schema={
            "type": "object",
            "properties": {"type": {"const": "unsubscribe"}, "room": NAME_SCHEMA},
            "required": ["type", "room"],
        },
        example={"type": "unsubscribe", "room": "random"},
    ),
    FrameDoc(
        key="clientPing",
        title="Client ping",
        summary="Answered to this client alone with a `pong` that echoes `data`, if given.",
        schema={
            "type": "object",
            "properties": {
                "type": {"const": "ping"},
                "data": {"description": "any JSON value, echoed in the pong"},
            },
            "required": ["type"],
        },
        example={"type": "ping", "data": {"seq": 1}},
    ),
    FrameDoc(
        key="clientPong",
        title="Client pong",
        summary="The answer to a heartbeat `ping`; nothing is sent back.",
        schema={
            "type": "object",
            "properties": {"type": {"const": "pong"}},
            "required": ["type"],
        },
        example={"type": "pong"},
    ),
    FrameDoc(
        key="refresh",
        title="Refresh",
        summary=(
            "(auth on) A newer token for this connection, with the same `sub`, usually in "
            "answer to `token_expiring`: answered with `refreshed`, or `error` `invalid_token` "
            "(the old token stays). Rooms its `rooms` claim no longer covers are unsubscribed "
            "(`unsubscribed` with reason `forbidden`)."
        ),
        schema={
            "type": "object",
            "properties": {
                "type": {"const": "refresh"},
                "token": {"type": "string", "minLength": 1, "description": "a JWT"},
            },
            "required": ["type", "token"],
        },
        example={"type": "refresh", "token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"},
    ),
)

# Any frame the server accepts, as far as a schema can tell (see the module docstring).
CLIENT_FRAME_SCHEMA: Final[Schema] = {"oneOf": [frame.schema for frame in CLIENT_FRAMES]}

SERVER_FRAMES: Final[tuple[FrameDoc, ...]] = (
    FrameDoc(
        key="welcome",
        title="Welcome",
        summary=(
            "The first frame after the upgrade, to this client alone; the path room's "
            "`subscribed` follows at once."
        ),
        schema=_frame(
            "welcome",
            {
                "client_id": _CLIENT_ID,
                "user_id": NAME_SCHEMA,
                "room": NAME_SCHEMA,
                "heartbeat_interval": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "description": "seconds between heartbeat pings",
                },
                "protocol": {"const": PROTOCOL_VERSION, "description": "the protocol version"},
            },
        ),
        example={
            "type": "welcome",
            "client_id": "9f86d081884c7d65",
            "user_id": "alice",
            "room": "general",
            "heartbeat_interval": 25.0,
            "protocol": PROTOCOL_VERSION,
        },
    ),
    FrameDoc(
        key="subscribed",
        title="Subscribed",
        summary=(
            "A room was joined (the path's room, or a `subscribe`); from then on the client "
            "receives every message of the room. Again, with `recovered: false`, if the room's "
            "history was lost while subscribed (a new epoch)."
        ),
        schema=_frame(
            "subscribed",
            {
                "room": NAME_SCHEMA,
                "epoch": _EPOCH | {"type": ["string", "null"]},
                "seq": _SEQ
                | {
                    "type": ["integer", "null"],
                    "description": (
                        "the room's latest seq at that moment; epoch and seq are null while the "
                        "history cannot be read (Redis down)"
                    ),
                },
                "recovered": {
                    "type": "boolean",
                    "description": (
                        "only when `since` was given: true when every message after it follows"
                    ),
                },
                "reason": {
                    "enum": ["epoch_changed", "too_old", "history_off", "unavailable"],
                    "description": "why recovered is false",
                },
                "presence": _PRESENCE,
            },
            optional=("recovered", "reason"),
        ),
        example={
            "type": "subscribed",
            "room": "general",
            "epoch": "3b9d0c4e5f6a7b8c",
            "seq": 42,
            "recovered": True,
            "presence": {"users": 1, "members": [{"user_id": "alice", "connections": 1}]},
        },
    ),
    FrameDoc(
        key="unsubscribed",
        title="Unsubscribed",
        summary="A room was left; no message of it follows.",
        schema=_frame(
            "unsubscribed",
            {"room": NAME_SCHEMA, "reason": {"enum": ["requested", "forbidden"]}},
        ),
        example={"type": "unsubscribed", "room": "random", "reason": "requested"},
    ),
    FrameDoc(
        key="chat",
        title="Chat message",
        summary=(
            "A chat message of the room, to every member, the sender included, in the same "
            "order for all of them."
        ),
        schema=_frame(
            "chat",
            {
                "id": {"type": "string", "description": "unique across the cluster"},
                "seq": _SEQ
                | {
                    "description": (
                        "the room's sequence number; absent while Redis is down (delivered to "
                        "this instance's members only, not in history): do not count it"
                    )
                },
                "room": NAME_SCHEMA,
                "client_id": {"type": "string", "description": "the sender's connection"},
                "user_id": NAME_SCHEMA,
                "body": {"type": "string", "description": "exactly as sent"},
                "ts": _TS,
                "client_msg_id": {
                    "type": "string",
                    "maxLength": MAX_CLIENT_MSG_ID,
                    "description": "only when the sender gave one",
                },
                "duplicate": {
                    "const": True,
                    "description": "to the sender alone: a retry's answer, the original message",
                },
            },
            optional=("seq", "client_msg_id", "duplicate"),
        ),
        example={
            "type": "chat",
            "seq": 42,
            "id": "3fa4c1e07b2d-2a",
            "room": "general",
            "client_id": "9f86d081884c7d65",
            "user_id": "alice",
            "body": "hello",
            "ts": 1767225600000,
            "client_msg_id": "c-1",
        },
    ),
    FrameDoc(
        key="presenceDiff",
        title="Presence diff",
        summary=(
            "Who came and went in the room, across the cluster, per user (a second tab is not a "
            "join): at most one per room per PRESENCE_INTERVAL (default 1 s), every change in "
            "between coalesced; a join and a leave of the same user within one interval cancel "
            "out. Apply `joins` as upserts and `leaves` as removals. At most PRESENCE_LIST_MAX "
            "of them are listed (then with `truncated`). PRESENCE_EVENTS=false turns them off."
        ),
        schema=_frame(
            "presence_diff",
            {
                "room": NAME_SCHEMA,
                "joins": {
                    "type": "array",
                    "items": MEMBER_SCHEMA,
                },
                "leaves": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"user_id": NAME_SCHEMA},
                        "required": ["user_id"],
                        "additionalProperties": False,
                    },
                },
                "users": _USERS,
                "truncated": {
                    "const": True,
                    "description": (
                        "only when more than PRESENCE_LIST_MAX users came and went: the lists "
                        "hold PRESENCE_LIST_MAX of them; page the presence endpoint for the rest"
                    ),
                },
            },
            optional=("truncated",),
        ),
        example={
            "type": "presence_diff",
            "room": "general",
            "joins": [{"user_id": "bob", "connections": 1}],
            "leaves": [{"user_id": "carol"}],
            "users": 2,
        },
    ),
    FrameDoc(
        key="heartbeat",
        title="Heartbeat ping",
        summary=(
            "Every `heartbeat_interval` seconds. Answer with `pong` (any frame resets the "
            "timeout); silence for HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT closes with 4000."
        ),
        schema=_frame("ping", {}),
        example={"type": "ping"},
    ),
    _token_event(
        "token_expiring",
        "tokenExpiring",
        "(auth on) TOKEN_EXPIRY_NOTICE seconds before the connection's token expires: send "
        "a `refresh`, or the connection is closed with 4002 at `exp`.",
    ),
    _token_event(
        "refreshed",
        "refreshed",
        "(auth on) A `refresh` was accepted: the connection now lives until `exp`.",
    ),
    FrameDoc(
        key="pong",
        title="Pong",
        summary="The answer to a client `ping`, to that client alone.",
        schema=_frame(
            "pong", {"data": {"description": "the ping's data, if it had any"}}, optional=("data",)
        ),
        example={"type": "pong", "data": {"seq": 1}},
    ),
    FrameDoc(
        key="error",
        title="Error",
        summary="A frame was refused, to its sender alone; the connection stays open.",
        schema=_frame(
            "error",
            {
                "code": {
                    "oneOf": [
                        {"const": code.value, "description": meaning}
                        for code, meaning in ERROR_CODE_MEANINGS.items()
                    ]
                },
                "detail": {"type": "string", "description": "for people"},
                "room": NAME_SCHEMA | {"description": "the room the refused frame was about"},
            },
            optional=("room",),
        ),
        example={
            "type": "error",
            "code": "unknown_type",
            "detail": "unknown type 'shout'",
        },
    ),
)
