"""The rooms of this instance over HTTP: `GET /api/chat-api/rooms`, every
room with local members, their counts here and the room's users across
the cluster (presence).

With AUTH_ENABLED the caller needs a token, as for the socket; it sees
only the rooms its `rooms` claim covers.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from quart import Response, jsonify, request
from quart_trio import QuartTrio

from ..runtime import ChatRuntime
from .access import Refused, caller_claims
from .handshake import API_PREFIX

__all__ = ["ROOMS_PATH", "register_rooms_routes", "rooms_body"]

ROOMS_PATH: Final = f"{API_PREFIX}/rooms"


def rooms_body(runtime: ChatRuntime, visible: list[str]) -> dict[str, Any]:
    """The JSON answer: each room of `visible` (by name) with its local
    connections and users, and its users and connections across the cluster."""
    rooms = []
    for room in sorted(visible):
        members = runtime.hub.members(room)
        if not members:
            continue  # its first member is still joining
        users, connections = runtime.presence.totals(room)
        rooms.append(
            {
                "room": room,
                "local_connections": len(members),
                "local_users": len(Counter(conn.user_id for conn in members)),
                "users": users,
                "connections": connections,
            }
        )
    return {"rooms": rooms, "connections": runtime.hub.connection_count()}


def register_rooms_routes(app: QuartTrio, runtime: ChatRuntime) -> None:
    """Mount `GET ROOMS_PATH` on `app`; `runtime.verifier` checks tokens
    (None: auth off, anyone may read)."""
    verifier = runtime.verifier

    @app.get(ROOMS_PATH)
    async def rooms() -> Response:
        """The rooms with members on this instance, with their counts.

        401 as the socket's upgrade when auth is on and the token is missing
        or bad; a token with a `rooms` claim sees only the rooms it covers.
        Never waits on Redis: presence is what this instance knows now.
        """
        visible = runtime.hub.room_names()
        if verifier is not None:
            try:
                claims = caller_claims(
                    verifier, request.headers.get("Authorization", ""), request.args
                )
            except Refused as exc:
                return exc.response()
            visible = [room for room in visible if claims.allows(room)]
        return jsonify(rooms_body(runtime, visible))
