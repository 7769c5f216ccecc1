"""The wire protocol's frames: parse and validate what clients send, encode
what the server sends. Pure functions and data: no I/O, no awaits.

Every server frame is one compact JSON object on one line (`json.dumps`
escapes control characters, so the text never holds a raw newline and
batched frames can be joined with `\\n`).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "DEFAULT_ROOM",
    "MAX_CLIENT_MSG_ID",
    "MAX_EPOCH_CHARS",
    "MAX_SEQ",
    "NAME_PATTERN",
    "PING_FRAME",
    "PROTOCOL_VERSION",
    "ChatRequest",
    "ClientFrame",
    "ErrorCode",
    "FrameError",
    "Message",
    "MessageType",
    "Ping",
    "Pong",
    "PresenceListing",
    "Refresh",
    "Since",
    "Subscribe",
    "Unsubscribe",
    "as_duplicate",
    "encode",
    "error_frame",
    "frame_seq",
    "frame_ts",
    "is_chat_frame",
    "is_valid_name",
    "new_message_id",
    "now_ms",
    "parse_chat",
    "parse_client_frame",
    "parse_object",
    "parse_since",
    "subscribed_frame",
    "unsubscribed_frame",
    "with_seq",
]

DEFAULT_ROOM: Final = "lobby"
# A room or user name. The API documents publish it as a JSON Schema pattern;
# `is_valid_name` fullmatches it, so a trailing newline is refused here too.
NAME_PATTERN: Final = r"^[A-Za-z0-9._-]{1,64}$"
_NAME = re.compile(NAME_PATTERN)
MAX_CLIENT_MSG_ID: Final = 64
# An epoch is ours (see history.py), but a client echoes it back: anything
# longer than this cannot be one, and is refused before it reaches Redis.
MAX_EPOCH_CHARS: Final = 64
PROTOCOL_VERSION: Final = 2
# The largest `seq` a client may name: JavaScript's largest exact integer.
MAX_SEQ: Final = 2**53 - 1


class MessageType(StrEnum):
    """The `type` of a room event: delivered to every member of a room."""

    CHAT = "chat"


class ErrorCode(StrEnum):
    """The `code` of an `error` frame."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    BODY_TOO_LONG = "body_too_long"
    RATE_LIMITED = "rate_limited"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    INVALID_ROOM = "invalid_room"
    NOT_SUBSCRIBED = "not_subscribed"
    TOO_MANY_ROOMS = "too_many_rooms"
    FORBIDDEN_ROOM = "forbidden_room"
    INVALID_TOKEN = "invalid_token"


class FrameError(Exception):
    """A client frame was refused; it is answered with an `error` frame."""

    def __init__(self, code: ErrorCode, detail: str, room: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.room = room


def is_valid_name(name: str) -> bool:
    """Whether `name` is a legal room or user name: 1-64 of A-Z a-z 0-9 . _ -"""
    return _NAME.fullmatch(name) is not None


def encode(frame: dict[str, Any] | list[dict[str, Any]]) -> str:
    """One frame (or part of one) as compact JSON text (UTF-8 safe: bodies
    are checked on parse)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def error_frame(code: ErrorCode, detail: str, room: str | None = None) -> str:
    """The `error` frame that refuses a client frame (about `room`, if given)."""
    frame: dict[str, Any] = {"type": "error", "code": code.value, "detail": detail}
    if room is not None:
        frame["room"] = room
    return encode(frame)


PING_FRAME: Final = encode({"type": "ping"})

# A chat frame is encoded once, without `seq`, and starts with _CHAT_HEAD
# (`Message.encode` puts `type` first); its `seq` is spliced in right after
# it, where the publish script and `frame_seq` find it without parsing.
_CHAT_HEAD: Final = '{"type":"chat",'
_SEQ_HEAD: Final = '{"type":"chat","seq":'


def with_seq(frame: str, seq: int) -> str:
    """The chat `frame` (encoded without `seq`) with its `seq`."""
    return f"{_SEQ_HEAD}{seq},{frame[len(_CHAT_HEAD) :]}"


def frame_seq(frame: str) -> int | None:
    """The `seq` of a chat frame made by `with_seq`; None for any other frame."""
    if not frame.startswith(_SEQ_HEAD):
        return None
    return int(frame[len(_SEQ_HEAD) : frame.index(",", len(_SEQ_HEAD))])


def is_chat_frame(frame: str) -> bool:
    """Whether `frame` is an encoded chat frame (with or without `seq`)."""
    return frame.startswith(_CHAT_HEAD)


# In a chat frame `ts` follows `body` and only `client_msg_id` may follow it.
# Inside a JSON string every `"` is escaped, so this finds only the real key.
_TS_KEY: Final = ',"ts":'
_DIGITS: Final = re.compile(r"\d+")


def frame_ts(frame: str) -> int | None:
    """The `ts` (Unix ms) of an encoded chat frame, found without parsing; None if it has none."""
    start = frame.rfind(_TS_KEY)
    if start < 0:
        return None
    digits = _DIGITS.match(frame, start + len(_TS_KEY))
    return None if digits is None else int(digits.group())


def as_duplicate(frame: str) -> str:
    """A chat frame made by `with_seq`, marked `"duplicate":true` (a retry's answer)."""
    end = frame.index(",", len(_SEQ_HEAD)) + 1
    return f'{frame[:end]}"duplicate":true,{frame[end:]}'


@dataclass(frozen=True, slots=True)
class PresenceListing:
    """A `subscribed` frame's `presence`: `users` present, and `members`,
    the listed ones as JSON text (a room's newcomers share one encoding
    until the listed members change)."""

    users: int
    members: str


def subscribed_frame(
    room: str,
    epoch: str | None,
    seq: int | None,
    presence: PresenceListing,
    *,
    recovered: bool | None = None,
    reason: str | None = None,
) -> str:
    """The `subscribed` frame: `room` was joined at `seq` of `epoch`."""
    frame: dict[str, Any] = {"type": "subscribed", "room": room, "epoch": epoch, "seq": seq}
    if recovered is not None:
        frame["recovered"] = recovered
    if reason is not None:
        frame["reason"] = reason
    # `presence` last, spliced in: as `encode` would write it, without
    # encoding the listed members again for every newcomer.
    head = encode(frame)[:-1]
    return f'{head},"presence":{{"users":{presence.users},"members":{presence.members}}}}}'


def unsubscribed_frame(room: str, reason: str) -> str:
    """The `unsubscribed` frame: `room` was left, for `reason`."""
    return encode({"type": "unsubscribed", "room": room, "reason": reason})


_instance_prefix: Final = secrets.token_hex(6)
_sequence = itertools.count()


def new_message_id() -> str:
    """A message id unique across the cluster: a random per-process prefix
    (48 bits) and a per-process sequence number."""
    return f"{_instance_prefix}-{next(_sequence):x}"


def now_ms() -> int:
    """Wall-clock Unix time in milliseconds, the protocol's `ts`."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message that goes to every member of `room`.

    `on_message` hooks receive and return these; a chat frame from a client
    without a `type` becomes a `Message` of type `chat`.
    """

    room: str
    client_id: str
    user_id: str
    type: MessageType = MessageType.CHAT
    body: str | None = None
    client_msg_id: str | None = None
    id: str = ""
    ts: int = 0

    def encode(self) -> str:
        """The frame every member receives; computed once per message."""
        frame: dict[str, Any] = {
            "type": self.type.value,
            "id": self.id,
            "room": self.room,
            "client_id": self.client_id,
            "user_id": self.user_id,
            "body": self.body,
            "ts": self.ts,
        }
        if self.client_msg_id is not None:
            frame["client_msg_id"] = self.client_msg_id
        return encode(frame)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A client's `chat` frame, validated; `room` None means the path's room."""

    body: str
    client_msg_id: str | None = None
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Since:
    """Where a recovering client left a room: the last `seq` it has, in `epoch`."""

    epoch: str
    seq: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A client's `subscribe` frame: join `room` on this socket, recovering from `since`."""

    room: str
    since: Since | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """A client's `unsubscribe` frame."""

    room: str


@dataclass(frozen=True, slots=True)
class Ping:
    """A client's `ping`; `pong_frame` is the answer to that client alone."""

    pong_frame: str


@dataclass(frozen=True, slots=True)
class Pong:
    """A client's answer to a heartbeat `ping`."""


@dataclass(frozen=True, slots=True)
class Refresh:
    """A client's `refresh` frame: a newer token for this connection."""

    token: str


ClientFrame = ChatRequest | Subscribe | Unsubscribe | Ping | Pong | Refresh


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise FrameError(ErrorCode.INVALID_MESSAGE, "duplicate key in object")
    return obj


def _is_unicode(text: str) -> bool:
    """False for strings holding lone surrogates (legal as JSON escapes, but
    not encodable as UTF-8, so they could never be sent on)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _loads(text: str) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except FrameError:
        raise
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers past Python's digit limit.
        detail = (
            exc.msg
            if isinstance(exc, json.JSONDecodeError)
            else "JSON nested or sized beyond limits"
        )
        raise FrameError(ErrorCode.INVALID_JSON, f"not valid JSON: {detail}") from None


def parse_client_frame(text: str, *, max_body_chars: int) -> ClientFrame:
    """Parse and validate one client text frame.

    Unknown fields are ignored. Raises `FrameError` with the protocol's code
    for anything the protocol refuses.
    """
    obj = parse_object(text)
    kind = obj.get("type", MessageType.CHAT.value)
    if kind == "chat":
        return parse_chat(obj, max_body_chars)
    if kind == "ping":
        return _parse_ping(obj)
    if kind == "pong":
        return Pong()
    if kind == "subscribe":
        return Subscribe(_parse_room(obj), _parse_since(obj.get("since")))
    if kind == "unsubscribe":
        return Unsubscribe(_parse_room(obj))
    if kind == "refresh":
        return _parse_refresh(obj)
    if not isinstance(kind, str):
        raise FrameError(ErrorCode.INVALID_MESSAGE, "type must be a string")
    raise FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown type {kind[:64]!r}")


def parse_object(text: str) -> dict[str, Any]:
    """The JSON object of a client frame (or a publish request's body).

    Raises `FrameError`: `invalid_json` for bad JSON, `invalid_message` for
    another value than an object, a duplicate key or a lone surrogate.
    """
    obj = _loads(text)
    if not isinstance(obj, dict):
        raise FrameError(ErrorCode.INVALID_MESSAGE, "a frame must be a JSON object")
    return obj


def parse_chat(obj: dict[str, Any], max_body_chars: int) -> ChatRequest:
    """The chat request of a frame's object (its `type` already seen to be chat).

    Raises `FrameError` for a bad `body`, `client_msg_id` or `room`.
    """
    body = obj.get("body")
    if not isinstance(body, str) or not body:
        raise FrameError(ErrorCode.INVALID_MESSAGE, "body must be a non-empty string")
    if len(body) > max_body_chars:
        raise FrameError(
            ErrorCode.BODY_TOO_LONG, f"body is {len(body)} characters; at most {max_body_chars}"
        )
    if not _is_unicode(body):
        raise FrameError(ErrorCode.INVALID_MESSAGE, "body holds unpaired surrogates")
    client_msg_id = obj.get("client_msg_id")
    if client_msg_id is not None and not (
        isinstance(client_msg_id, str)
        and len(client_msg_id) <= MAX_CLIENT_MSG_ID
        and _is_unicode(client_msg_id)
    ):
        raise FrameError(
            ErrorCode.INVALID_MESSAGE,
            f"client_msg_id must be a string of at most {MAX_CLIENT_MSG_ID} characters",
        )
    room = _parse_room(obj) if "room" in obj else None
    return ChatRequest(body, client_msg_id, room)


def _parse_room(obj: dict[str, Any]) -> str:
    room = obj.get("room")
    if not isinstance(room, str) or not is_valid_name(room):
        raise FrameError(ErrorCode.INVALID_ROOM, "room must be 1 to 64 of A-Z a-z 0-9 . _ -")
    return room


def parse_since(epoch: Any, seq: Any) -> Since:
    """A recovery position from a client (a `subscribe` frame or the query).

    Raises `FrameError` (`invalid_message`) unless `epoch` is a string of at
    most MAX_EPOCH_CHARS and `seq` an integer from 0 to MAX_SEQ (JSON's
    `41.0` is one).
    """
    if isinstance(seq, float) and seq.is_integer():
        seq = int(seq)
    if (
        not isinstance(epoch, str)
        or len(epoch) > MAX_EPOCH_CHARS
        or not _is_unicode(epoch)
        or isinstance(seq, bool)
        or not isinstance(seq, int)
        or not 0 <= seq <= MAX_SEQ
    ):
        raise FrameError(
            ErrorCode.INVALID_MESSAGE,
            f"since must be {{epoch: a string of at most {MAX_EPOCH_CHARS} characters, "
            f"seq: an integer from 0 to {MAX_SEQ}}}",
        )
    return Since(epoch, seq)


def _parse_since(since: Any) -> Since | None:
    if since is None:
        return None
    if not isinstance(since, dict):
        raise FrameError(ErrorCode.INVALID_MESSAGE, "since must be an object or null")
    return parse_since(since.get("epoch"), since.get("seq"))


def _parse_refresh(obj: dict[str, Any]) -> Refresh:
    token = obj.get("token")
    if not isinstance(token, str) or not token or not _is_unicode(token):
        raise FrameError(ErrorCode.INVALID_MESSAGE, "token must be a non-empty string")
    return Refresh(token)


def _parse_ping(obj: dict[str, Any]) -> Ping:
    if "data" not in obj:
        return Ping(encode({"type": "pong"}))
    try:
        frame = encode({"type": "pong", "data": obj["data"]})
    except RecursionError:
        frame = ""
    if not frame or not _is_unicode(frame):
        raise FrameError(ErrorCode.INVALID_MESSAGE, "ping data cannot be echoed")
    return Ping(frame)
