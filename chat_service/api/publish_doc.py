"""The publish API (`POST .../rooms/{room}/messages`) as the OpenAPI
document describes it; `messages_routes.py` serves it."""

from __future__ import annotations

from typing import Any, Final

from ..realtime.message import MAX_CLIENT_MSG_ID
from ..realtime.schemas import DEFAULT_MAX_BODY_CHARS, NAME_SCHEMA
from .publish import SYSTEM_USER

__all__ = ["PUBLISH_OPERATION", "PUBLISH_SECURITY_SCHEME"]

PUBLISH_SECURITY_SCHEME: Final = {
    "type": "http",
    "scheme": "bearer",
    "description": "PUBLISH_API_KEY, or a JWT (auth on) whose `scope` includes `publish`",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _refusal(description: str, *errors: str, **headers: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": _json(
            {
                "type": "object",
                "properties": {
                    "error": {"type": "string", "enum": list(errors)},
                    "detail": {"type": "string", "description": "for people"},
                },
                "required": ["error", "detail"],
                "additionalProperties": False,
            }
        ),
    }
    if headers:
        response["headers"] = headers
    return response


_PUBLISHED: Final = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "unique across the cluster"},
        "seq": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "the room's sequence number (null while Redis is down)",
        },
        "room": NAME_SCHEMA,
        "ts": {"type": "integer", "description": "Unix time in milliseconds"},
        "type": {"const": "chat"},
        "client_id": {"type": "string", "description": "the publishing request's id"},
        "user_id": NAME_SCHEMA,
        "body": {"type": "string"},
        "client_msg_id": {"type": "string"},
        "duplicate": {"const": True, "description": "a retry: this is the original"},
    },
    "required": ["id", "room", "ts"],
}

# The OpenAPI operation of the publish API (api/spec.py puts it in the document).
PUBLISH_OPERATION: Final[dict[str, Any]] = {
    "operationId": "publishMessage",
    "summary": "Publish a message in a room from a backend",
    "description": (
        "Published as a client's `chat` message is: through the service's `on_message` hook, "
        "with the room's next `seq`, into history, to every subscriber on every instance in "
        "the room's one order. A retry with the same `client_msg_id` (and `user_id`) publishes "
        "nothing new and answers 200 with the original. Authenticated with "
        "`Authorization: Bearer <PUBLISH_API_KEY>`, or a JWT (auth on) whose `scope` includes "
        "`publish` (and whose `rooms` claim, if any, covers the room); rate-limited per "
        "credential (PUBLISH_RATE_PER_SECOND, PUBLISH_RATE_BURST)."
    ),
    "parameters": [
        {
            "name": "room",
            "in": "path",
            "required": True,
            "description": NAME_SCHEMA["description"],
            "schema": NAME_SCHEMA,
        }
    ],
    "security": [{"publishAuth": []}],
    "requestBody": {
        "required": True,
        "content": _json(
            {
                "type": "object",
                "properties": {
                    "body": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": DEFAULT_MAX_BODY_CHARS,
                        "description": "at most MAX_BODY_CHARS characters",
                    },
                    "user_id": NAME_SCHEMA
                    | {
                        "description": (
                            f"who it is from (default: `{SYSTEM_USER}` with the API key, the "
                            "token's `sub` with a JWT)"
                        )
                    },
                    "client_msg_id": {
                        "type": ["string", "null"],
                        "maxLength": MAX_CLIENT_MSG_ID,
                        "description": (
                            "makes a retry safe: the same id (from the same user_id) is not "
                            "published twice; null is the same as leaving it out"
                        ),
                    },
                },
                "required": ["body"],
            }
        ),
    },
    "responses": {
        "201": {"description": "Published", "content": _json(_PUBLISHED)},
        "200": {
            "description": "A retry of a message already published: the original",
            "content": _json(_PUBLISHED),
        },
        "400": _refusal(
            "The room name or the body is not valid",
            "invalid_room",
            "invalid_json",
            "invalid_message",
            "body_too_long",
            "invalid_user_id",
        ),
        "401": _refusal(
            "No credential, or neither the publish API key nor a valid JWT",
            "unauthorized",
            **{"WWW-Authenticate": {"required": True, "schema": {"const": "Bearer"}}},
        ),
        "403": _refusal(
            "A JWT without scope `publish`, a room its `rooms` claim does not cover, or a "
            "message the service's `on_message` hook dropped",
            "forbidden",
            "forbidden_room",
            "dropped",
        ),
        "413": _refusal(
            "The request body is over MAX_MESSAGE_BYTES (64 KiB by default; refused as it "
            "arrives; the connection is closed)",
            "too_large",
            **{"Connection": {"required": True, "schema": {"const": "close"}}},
        ),
        "429": _refusal(
            "This credential publishes faster than its rate limit",
            "rate_limited",
            **{"Retry-After": {"required": True, "schema": {"type": "string"}}},
        ),
        "503": _refusal(
            "Redis broke mid-publish: it may or may not be published; retry with the same "
            "`client_msg_id`",
            "publish_failed",
        ),
    },
}
