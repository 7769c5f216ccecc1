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
    "NAME_PATTERN",
    "PING_FRAME",
    "ChatRequest",
    "ClientFrame",
    "ErrorCode",
    "FrameError",
    "Message",
    "MessageType",
    "Ping",
    "Pong",
    "encode",
    "error_frame",
    "is_valid_name",
    "new_message_id",
    "now_ms",
    "parse_client_frame",
]

DEFAULT_ROOM: Final = "lobby"
# A room or user name. The API documents publish it as a JSON Schema pattern;
# `is_valid_name` fullmatches it, so a trailing newline is refused here too.
NAME_PATTERN: Final = r"^[A-Za-z0-9._-]{1,64}$"
_NAME = re.compile(NAME_PATTERN)
MAX_CLIENT_MSG_ID: Final = 64


class MessageType(StrEnum):
    """The `type` of a room event: delivered to every member of a room."""

    CHAT = "chat"
    JOIN = "join"
    LEAVE = "leave"


class ErrorCode(StrEnum):
    """The `code` of an `error` frame."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    BODY_TOO_LONG = "body_too_long"
    RATE_LIMITED = "rate_limited"
    BINARY_NOT_SUPPORTED = "binary_not_supported"


class FrameError(Exception):
    """A client frame was refused; it is answered with an `error` frame."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def is_valid_name(name: str) -> bool:
    """Whether `name` is a legal room or user name: 1-64 of A-Z a-z 0-9 . _ -"""
    return _NAME.fullmatch(name) is not None


def encode(frame: dict[str, Any]) -> str:
    """One frame as compact JSON text (UTF-8 safe: bodies are checked on parse)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def error_frame(code: ErrorCode, detail: str) -> str:
    """The `error` frame that refuses a client frame."""
    return encode({"type": "error", "code": code.value, "detail": detail})


PING_FRAME: Final = encode({"type": "ping"})

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
    """A room event (chat, join or leave) that goes to every member of `room`.

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
        frame: dict[str, Any] = {"type": self.type.value}
        if self.type is MessageType.CHAT:
            frame["id"] = self.id
        frame |= {
            "room": self.room,
            "client_id": self.client_id,
            "user_id": self.user_id,
        }
        if self.type is MessageType.CHAT:
            frame["body"] = self.body
        frame["ts"] = self.ts
        if self.client_msg_id is not None:
            frame["client_msg_id"] = self.client_msg_id
        return encode(frame)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A client's `chat` frame, validated."""

    body: str
    client_msg_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """A client's `ping`; `pong_frame` is the answer to that client alone."""

    pong_frame: str


@dataclass(frozen=True, slots=True)
class Pong:
    """A client's answer to a heartbeat `ping`."""


ClientFrame = ChatRequest | Ping | Pong


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
    obj = _loads(text)
    if not isinstance(obj, dict):
        raise FrameError(ErrorCode.INVALID_MESSAGE, "a frame must be a JSON object")
    kind = obj.get("type", MessageType.CHAT.value)
    if kind == "chat":
        return _parse_chat(obj, max_body_chars)
    if kind == "ping":
        return _parse_ping(obj)
    if kind == "pong":
        return Pong()
    if not isinstance(kind, str):
        raise FrameError(ErrorCode.INVALID_MESSAGE, "type must be a string")
    raise FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown type {kind[:64]!r}")


def _parse_chat(obj: dict[str, Any], max_body_chars: int) -> ChatRequest:
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
    return ChatRequest(body, client_msg_id)


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
