"""Who is in a room, over HTTP: `GET /api/chat-api/rooms/{room}/presence`,
its members per user, paged by `user_id`.

The `presence` of a `subscribed` frame lists the first PRESENCE_LIST_MAX
members; this pages the rest (`cursor` = the last `user_id` listed).
Authentication is the socket's (`access.room_claims`).
"""

from __future__ import annotations

from typing import Any, Final

from quart import Response, jsonify, request
from quart_trio import QuartTrio

from ..realtime.message import is_valid_name
from ..realtime.presence import Page, PresenceUnavailable
from ..runtime import ChatRuntime
from .access import NAME_RULE, Refused, check_room, room_claims
from .handshake import API_PREFIX
from .query import BadParameter, integer_parameter

__all__ = [
    "MAX_PRESENCE_PAGE",
    "PRESENCE_PATH",
    "presence_body",
    "register_presence_routes",
]

PRESENCE_PATH: Final = f"{API_PREFIX}/rooms/{{room}}/presence"
"""The path as the OpenAPI document writes it."""
PRESENCE_RULE: Final = f"{API_PREFIX}/rooms/<room>/presence"
# A page stays one quick answer of a few tens of KiB however big the room is.
MAX_PRESENCE_PAGE: Final = 1000


def presence_body(room: str, page: Page) -> dict[str, Any]:
    """The JSON answer for one page of `room`'s members."""
    return {
        "room": room,
        "users": page.users,
        "connections": page.connections,
        "members": page.members,
        "next_cursor": page.cursor,
    }


def register_presence_routes(app: QuartTrio, runtime: ChatRuntime) -> None:
    """Mount `GET PRESENCE_RULE` on `app`, reading `runtime.presence`;
    `runtime.verifier` checks tokens (None: auth off, anyone may read)."""
    verifier = runtime.verifier
    default_limit = runtime.config.presence_list_max or 1

    @app.get(PRESENCE_RULE)
    async def room_presence(room: str) -> Response:
        """Up to `limit` members of `room` after the user `cursor`, with the
        room's totals, across the cluster.

        400 for a bad room name or parameter, 401/403 as the socket's
        upgrade, 503 `unavailable` while presence cannot be read (Redis
        down). Cancelled (the client went away), it abandons the read.
        """
        try:
            check_room(room)
            limit = integer_parameter(
                request.args, "limit", low=1, high=MAX_PRESENCE_PAGE, default=default_limit
            )
            cursor = request.args.get("cursor")
            if cursor is not None and not is_valid_name(cursor):
                raise BadParameter("cursor", f"cursor is a user_id: {NAME_RULE}")
            if verifier is not None:
                room_claims(verifier, request.headers.get("Authorization", ""), request.args, room)
            try:
                page = await runtime.presence.page(room, limit=limit, cursor=cursor)
            except PresenceUnavailable:
                raise Refused(
                    503, "unavailable", "presence cannot be read now (Redis is down): retry"
                ) from None
        except Refused as exc:
            return exc.response()
        return jsonify(presence_body(room, page))
