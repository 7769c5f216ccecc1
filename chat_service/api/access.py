"""Who may use a room: the one check of a request's bearer token for a
room, shared by the WebSocket upgrade and the HTTP room endpoints, and the
JSON refusals that answer a request which may not go on."""

from __future__ import annotations

import json
from collections.abc import Mapping

from quart import Response

from ..realtime.grant import FORBIDDEN_ROOM_DETAIL
from ..realtime.message import is_valid_name
from .auth import AuthError, Claims, TokenVerifier, bearer_token

__all__ = [
    "NAME_RULE",
    "REFUSAL_CONTENT_TYPE",
    "Refused",
    "caller_claims",
    "check_room",
    "refusal",
    "refusal_body",
    "room_claims",
]

NAME_RULE = "1 to 64 characters of A-Z a-z 0-9 . _ -"
REFUSAL_CONTENT_TYPE = "application/json"


class Refused(Exception):
    """The request is answered with a JSON refusal instead of being served."""

    def __init__(self, status: int, error: str, detail: str, **headers: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers

    def response(self) -> Response:
        """The refusal as an HTTP response: `{"error", "detail"}`."""
        return refusal(self.status, self.error, self.detail, **self.headers)


def refusal_body(error: str, detail: str) -> bytes:
    """The JSON body `{"error", "detail"}` of a refusal, as Quart's
    `jsonify` writes it (sorted keys, compact, ASCII, a final newline)."""
    text = json.dumps({"error": error, "detail": detail}, sort_keys=True, separators=(",", ":"))
    return f"{text}\n".encode()


def refusal(status: int, error: str, detail: str, **headers: str) -> Response:
    """An HTTP answer `status` with the JSON body `{"error", "detail"}` and `headers`."""
    response = Response(refusal_body(error, detail), status, content_type=REFUSAL_CONTENT_TYPE)
    response.headers.update(headers)
    return response


def check_room(room: str) -> None:
    """Raises `Refused` (400 `invalid_room`) unless `room` is a valid room name."""
    if not is_valid_name(room):
        raise Refused(400, "invalid_room", f"a room name is {NAME_RULE}")


def room_claims(
    verifier: TokenVerifier, authorization: str, args: Mapping[str, str], room: str
) -> Claims:
    """The claims of the request's token (the `authorization` header's
    `Bearer <jwt>`, else the `token` query parameter of `args`), if they
    allow `room`.

    Raises:
        Refused: 401 `unauthorized` (with `WWW-Authenticate: Bearer`) when
            the token is missing or does not verify; 403 `forbidden_room`
            when its `rooms` claim does not cover `room`.
    """
    claims = caller_claims(verifier, authorization, args)
    if not claims.allows(room):
        raise Refused(403, "forbidden_room", FORBIDDEN_ROOM_DETAIL)
    return claims


def caller_claims(verifier: TokenVerifier, authorization: str, args: Mapping[str, str]) -> Claims:
    """The claims of the request's token (the `authorization` header's
    `Bearer <jwt>`, else the `token` query parameter of `args`).

    Raises:
        Refused: 401 `unauthorized` (with `WWW-Authenticate: Bearer`) when
            the token is missing or does not verify.
    """
    try:
        return verifier.verify(bearer_token(authorization, args.get("token", "")))
    except AuthError as exc:
        raise Refused(401, "unauthorized", str(exc), **{"WWW-Authenticate": "Bearer"}) from None
