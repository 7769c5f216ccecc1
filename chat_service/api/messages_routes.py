"""A room's messages over HTTP, `/api/chat-api/rooms/{room}/messages`:
`GET` pages its history backwards from the newest message; `POST` publishes
a backend's message in it (`publish.Publishing`).

Reading takes the socket's authentication (`access.room_claims`): with
AUTH_ENABLED a token whose `rooms` claim covers the room. Publishing takes
PUBLISH_API_KEY or a JWT with scope `publish`.
"""

from __future__ import annotations

import json
from typing import Any, Final

from quart import Response, jsonify, request
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge

from ..realtime.history import HistoryUnavailable, Page
from ..realtime.message import MAX_SEQ, frame_seq
from ..runtime import ChatRuntime
from .access import Refused, check_room, room_claims
from .handshake import API_PREFIX
from .publish import Publishing
from .query import integer_parameter

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "MESSAGES_PATH",
    "MESSAGES_RULE",
    "page_body",
    "register_room_messages_routes",
]

MESSAGES_PATH: Final = f"{API_PREFIX}/rooms/{{room}}/messages"
"""The path as the OpenAPI document writes it."""
MESSAGES_RULE: Final = f"{API_PREFIX}/rooms/<room>/messages"
"""The path as a Quart route rule."""
# A screen of chat, and at most two: a page stays a small, quick answer
# however long the room's history is.
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 100


def page_body(room: str, page: Page) -> dict[str, Any]:
    """The JSON answer for one page of `room`'s history: its chat frames,
    oldest first, and `next_before`, the `before` of the next older page
    (None once `has_more` is false)."""
    messages = [json.loads(frame) for frame in page.frames]
    next_before = frame_seq(page.frames[0]) if page.has_more and page.frames else None
    return {
        "room": room,
        "epoch": page.epoch,
        "messages": messages,
        "has_more": page.has_more,
        "next_before": next_before,
    }


def register_room_messages_routes(app: QuartTrio, runtime: ChatRuntime) -> None:
    """Mount `GET MESSAGES_RULE` on `app`, reading `runtime.history`
    (`runtime.verifier` checks tokens; None: auth off, anyone may read), and
    `POST MESSAGES_RULE`, publishing through `runtime.handler`."""
    verifier = runtime.verifier
    publishing = Publishing(runtime)
    max_body_bytes = app.config["MAX_CONTENT_LENGTH"]

    @app.get(MESSAGES_RULE)
    async def room_messages(room: str) -> Response:
        """Up to `limit` messages of `room` with a `seq` below `before`.

        400 for a bad room name or parameter, 401/403 as the socket's
        upgrade, 503 `unavailable` while the history cannot be read (Redis
        down). Cancelled (the client went away), it abandons the read.
        """
        try:
            check_room(room)
            before = integer_parameter(request.args, "before", low=1, high=MAX_SEQ)
            limit = integer_parameter(
                request.args, "limit", low=1, high=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE
            )
            if verifier is not None:
                room_claims(verifier, request.headers.get("Authorization", ""), request.args, room)
            try:
                page = await runtime.history.page(room, before, limit)
            except HistoryUnavailable:
                raise Refused(
                    503, "unavailable", "the history cannot be read now (Redis is down): retry"
                ) from None
        except Refused as exc:
            return exc.response()
        return jsonify(page_body(room, page))

    @app.post(MESSAGES_RULE)
    async def publish_message(room: str) -> Response:
        """Publish a backend's message in `room` (the OpenAPI document's
        `publishMessage`): 201 with its `id` and `seq`, 200 for a retry,
        else a JSON refusal. The body is read first, within the app's
        MAX_CONTENT_LENGTH, so that a refusal leaves the connection
        reusable (an answer before the body has come closes it); only a
        413 closes it, saying so. Cancelled (the backend went away), the
        message is published whole or not at all.
        """
        try:
            try:
                # Bounded as it arrives, and refused at once when
                # Content-Length says more.
                body: bytes = await request.body
            except RequestEntityTooLarge:
                raise Refused(
                    413,
                    "too_large",
                    f"the body is over {max_body_bytes} bytes",
                    Connection="close",
                ) from None
            check_room(room)
            publisher = publishing.authenticate(request.headers.get("Authorization", ""))
            publishing.check_rate(publisher)
            status, answer = await publishing.publish(
                publisher, room, body, address=request.remote_addr or ""
            )
        except Refused as exc:
            return exc.response()
        response = jsonify(answer)
        response.status_code = status
        return response
