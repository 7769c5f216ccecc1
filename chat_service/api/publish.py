"""Publishing from a backend: who may (`PUBLISH_API_KEY`, or a JWT with
scope `publish`), how often (a token bucket per credential), and what a
request may say; the message itself goes through the handler's path, as a
client's does."""

from __future__ import annotations

import hmac
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from quart import Response, jsonify, request
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge

from ..realtime.broadcaster import Published, PublishFailed
from ..realtime.connection import Connection
from ..realtime.grant import FORBIDDEN_ROOM_DETAIL, AuthError, Grant
from ..realtime.message import ChatRequest, FrameError, is_valid_name, parse_chat, parse_object
from ..realtime.rate_limit import TokenBucket
from ..runtime import ChatRuntime
from .auth import bearer_token
from .publish_doc import ROOM_MESSAGES_PATH, SYSTEM_USER

__all__ = [
    "PUBLISH_SCOPE",
    "SYSTEM_USER",
    "PublishRefused",
    "Publisher",
    "Publishing",
    "register_publish_route",
]


# The `scope` word a JWT needs to publish.
PUBLISH_SCOPE: Final = "publish"
NAME_RULE: Final = "1 to 64 characters of A-Z a-z 0-9 . _ -"
# Credentials whose rate-limit buckets are kept: far more than a deployment
# has backends; the least recently used one is forgotten past it (and
# starts full again: a limit, not a ban).
_MAX_BUCKETS: Final = 10_000


class PublishRefused(Exception):
    """A publish request is refused: HTTP `status` with `{"error", "detail"}`."""

    def __init__(self, status: int, error: str, detail: str, **headers: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


def _unauthorized(detail: str) -> PublishRefused:
    return PublishRefused(401, "unauthorized", detail, **{"WWW-Authenticate": "Bearer"})


@dataclass(frozen=True, slots=True)
class Publisher:
    """A verified publishing credential: `key` names it for the rate
    limit; `grant` is who it posts as by default and which rooms it may."""

    key: str
    grant: Grant


class Publishing:
    """The publish API of one instance: credentials, rate limits, requests."""

    def __init__(self, runtime: ChatRuntime) -> None:
        self._runtime = runtime
        self._api_key = runtime.config.publish_api_key.encode()
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def authenticate(self, authorization: str) -> Publisher:
        """The credential of an `Authorization: Bearer` header value: the
        API key (compared in constant time), or a JWT (auth on) with scope
        `publish`.

        Raises:
            PublishRefused: 401 for a missing or unknown credential, 403 for
                a valid JWT without the scope.
        """
        try:
            token = bearer_token(authorization)
        except AuthError as exc:
            raise _unauthorized(str(exc)) from None
        if self._api_key and hmac.compare_digest(token.encode(), self._api_key):
            return Publisher("api-key", Grant(SYSTEM_USER))
        verifier = self._runtime.verifier
        if verifier is None:
            raise _unauthorized("not the publish API key")
        try:
            claims = verifier.verify(token)
        except AuthError as exc:
            raise _unauthorized(f"neither the publish API key nor a valid JWT: {exc}") from None
        if PUBLISH_SCOPE not in claims.scope:
            raise PublishRefused(403, "forbidden", "the token's scope does not include publish")
        return Publisher(f"jwt:{claims.user_id}", claims)

    def check_rate(self, publisher: Publisher) -> None:
        """Take one message from `publisher`'s bucket.

        Raises:
            PublishRefused: 429 `rate_limited`, with `Retry-After`, when empty.
        """
        bucket = self._buckets.pop(publisher.key, None)
        if bucket is None:
            config = self._runtime.config
            bucket = TokenBucket(
                rate=config.publish_rate_per_second, burst=config.publish_rate_burst
            )
        self._buckets[publisher.key] = bucket
        if len(self._buckets) > _MAX_BUCKETS:
            self._buckets.popitem(last=False)
        if not bucket.take():
            retry_after = str(max(1, math.ceil(bucket.seconds_to_next())))
            raise PublishRefused(
                429,
                "rate_limited",
                "this credential publishes faster than PUBLISH_RATE_PER_SECOND",
                **{"Retry-After": retry_after},
            )

    async def publish(
        self, publisher: Publisher, room: str, body: bytes, *, address: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """Say the request `body` (`{"body", "user_id"?, "client_msg_id"?}`)
        in `room` as `publisher`, through the handler as a client's message
        goes (hook, `seq`, history, safe retries), from IP `address`.

        Returns 201 and `{"id", "seq", "room", "ts", ...}`, or 200 and the
        original with `"duplicate": true` for a retry. Cancellation (the
        backend went away) leaves the message published or not, whole.

        Raises:
            PublishRefused: 400 for a bad body, 403 for a room the credential
                may not publish in or a message the `on_message` hook
                dropped, 503 when it may not have been published (retry with
                the same `client_msg_id`).
        """
        if not publisher.grant.allows(room):
            raise PublishRefused(403, "forbidden_room", FORBIDDEN_ROOM_DETAIL)
        request, user_id = self._parse(body, publisher.grant.user_id)
        # The hook sees the backend as a connection of its own, in no room.
        conn = Connection(
            room=room,
            user_id=user_id,
            send_queue_size=1,
            heartbeat_deadline=math.inf,
            grant=publisher.grant,
            address=address,
        )
        outcome = await self._runtime.handler.publish_chat(conn, room, request)
        if outcome is None:
            raise PublishRefused(403, "dropped", "the service's on_message hook dropped it")
        try:
            published: Published = await outcome.wait()
        except PublishFailed:
            raise PublishRefused(
                503,
                "publish_failed",
                "the connection to Redis broke: it may or may not have been published; "
                "retry with the same client_msg_id",
            ) from None
        return (200 if published.duplicate else 201), published.fields() | (
            {"duplicate": True} if published.duplicate else {}
        )

    def _parse(self, body: bytes, default_user: str) -> tuple[ChatRequest, str]:
        """The chat request of a publish body, and who it is from."""
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise PublishRefused(400, "invalid_json", "the body is not UTF-8") from None
        try:
            fields = parse_object(text)
            if fields.get("type", "chat") != "chat" or "room" in fields:
                raise PublishRefused(
                    400, "invalid_message", 'the body is {"body", "user_id"?, "client_msg_id"?}'
                )
            request = parse_chat(fields, self._runtime.config.max_body_chars)
        except FrameError as exc:
            raise PublishRefused(400, exc.code.value, exc.detail) from None
        user_id = fields.get("user_id", default_user)
        if not isinstance(user_id, str) or not is_valid_name(user_id):
            raise PublishRefused(
                400, "invalid_user_id", "a user_id is 1 to 64 characters of A-Z a-z 0-9 . _ -"
            )
        return request, user_id


def register_publish_route(app: QuartTrio, runtime: ChatRuntime) -> None:
    """Mount `POST .../rooms/{room}/messages` (the publish API) on `app`."""
    publishing = Publishing(runtime)
    max_bytes = app.config["MAX_CONTENT_LENGTH"]

    @app.post(ROOM_MESSAGES_PATH.replace("{room}", "<room>"))
    async def publish_message(room: str) -> Response:
        """Publish a backend's message in `room` (see PUBLISH_OPERATION)."""
        try:
            if not is_valid_name(room):
                raise PublishRefused(400, "invalid_room", f"a room name is {NAME_RULE}")
            publisher = publishing.authenticate(request.headers.get("Authorization", ""))
            publishing.check_rate(publisher)
            try:
                # Bounded by the app's MAX_CONTENT_LENGTH as it arrives, and
                # refused at once when Content-Length says more.
                body: bytes = await request.body
            except RequestEntityTooLarge:
                raise PublishRefused(
                    413, "too_large", f"the body is over {max_bytes} bytes"
                ) from None
            status, answer = await publishing.publish(
                publisher, room, body, address=request.remote_addr or ""
            )
        except PublishRefused as refused:
            response = jsonify({"error": refused.error, "detail": refused.detail})
            response.status_code = refused.status
            response.headers.update(refused.headers)
            return response
        response = jsonify(answer)
        response.status_code = status
        return response
