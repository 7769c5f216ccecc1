"""The WebSocket handshake as the API documents describe it: the paths, what
an upgrade request may carry, and how it can be refused before the upgrade.

One description for both documents (OpenAPI for the HTTP side, AsyncAPI for
the channels); tests hold the routes to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..realtime.message import MAX_EPOCH_CHARS, MAX_SEQ
from ..realtime.schemas import NAME_SCHEMA

__all__ = [
    "API_PREFIX",
    "AUTHORIZATION_HEADER",
    "AUTH_DESCRIPTION",
    "METRICS_PATH",
    "QUERY_PARAMETERS",
    "REFUSALS",
    "WS_PATH",
    "Refusal",
]

API_PREFIX: Final = "/api/chat-api"
WS_PATH: Final = f"{API_PREFIX}/ws"
# Where Prometheus expects it: at the root, beside /healthz and /readyz.
METRICS_PATH: Final = "/metrics"

Schema = dict[str, Any]

AUTH_DESCRIPTION: Final = (
    "Only when AUTH_ENABLED=true, in the upgrade request: a JWT, as "
    "`Authorization: Bearer <jwt>` or the `token` query parameter; HS256 with "
    "AUTH_JWT_SECRET, or RS256/ES256 with the public key in AUTH_JWT_PUBLIC_KEY_FILE. "
    "`exp` (and `nbf`) are enforced within AUTH_LEEWAY_SECONDS, `aud`/`iss` checked when "
    "AUTH_JWT_AUDIENCE/AUTH_JWT_ISSUER are set, and `sub` becomes the user_id. "
    "Without auth, neither is needed."
)

QUERY_PARAMETERS: Final[dict[str, Schema]] = {
    "user_id": NAME_SCHEMA
    | {
        "description": (
            "Who is speaking, when AUTH_ENABLED=false (default `anonymous`); "
            "1 to 64 characters of A-Z a-z 0-9 . _ -. Ignored when auth is on."
        )
    },
    "token": {
        "type": "string",
        "description": (
            "A JWT, when AUTH_ENABLED=true and the client cannot set the Authorization "
            "header (browsers); checked as the Authorization header's would be."
        ),
    },
    "batch": {
        "type": "string",
        "description": (
            "`1`: the server may put several messages in one text frame, separated by `\\n`. "
            "Any other value: one message per frame."
        ),
    },
    "since": {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_SEQ,
        "description": (
            "With `epoch`: recover the path's room from here, the last `seq` this client "
            "received in it. Its `subscribed` frame says `recovered: true` and every message "
            "after `since` follows, in order, before the live ones; or `recovered: false` "
            "with a `reason`. As a `subscribe` frame's `since`."
        ),
    },
    "epoch": {
        "type": "string",
        "maxLength": MAX_EPOCH_CHARS,
        "description": "With `since`: the `epoch` of the room's last `subscribed` frame.",
    },
}

AUTHORIZATION_HEADER: Final[Schema] = {
    "type": "string",
    "pattern": "^Bearer ",
    "description": "`Bearer <jwt>`, when AUTH_ENABLED=true (or use the `token` query parameter)",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer to an upgrade request, sent instead of opening the WebSocket."""

    status: int
    errors: dict[str, str]  # the body's `error` -> when it is sent


REFUSALS: Final = (
    Refusal(
        400,
        {
            "invalid_room": "the room name is not 1 to 64 characters of A-Z a-z 0-9 . _ -",
            "invalid_user_id": "(auth off) the user_id is not a valid name",
            "invalid_handshake": "Sec-WebSocket-Key is not 16 bytes in base64 (RFC 6455)",
            "invalid_since": (
                "`since` is not an integer from 0 to 2^53 - 1, or `epoch` came without it"
            ),
            "invalid_epoch": (
                f"`epoch` is longer than {MAX_EPOCH_CHARS} characters, or `since` came without it"
            ),
        },
    ),
    Refusal(
        401,
        {
            "unauthorized": (
                "(auth on) the JWT is missing, malformed, badly signed, expired, not yet "
                "valid, or for another audience or issuer; "
                "with `WWW-Authenticate: Bearer`"
            )
        },
    ),
    Refusal(
        403,
        {
            "forbidden_origin": (
                "ALLOWED_ORIGINS is set, and the request's Origin header is present and not listed"
            ),
            "forbidden_room": "(auth on) the token's `rooms` claim does not cover the path's room",
        },
    ),
    Refusal(
        429,
        {
            "too_many_connections": (
                "this user_id has MAX_CONNECTIONS_PER_USER clients on this instance, or this "
                "client address has MAX_CONNECTIONS_PER_IP (the address a proxy in "
                "FORWARDED_ALLOW_IPS forwards): close one first"
            )
        },
    ),
    Refusal(
        503,
        {
            "shutting_down": "this instance is draining: reconnect to any instance",
            "at_capacity": "this instance has MAX_CONNECTIONS clients: retry later",
        },
    ),
)
