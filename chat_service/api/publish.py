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

from ..realtime.broadcaster import Published, PublishFailed
from ..realtime.connection import Connection
from ..realtime.grant import FORBIDDEN_ROOM_DETAIL, AuthError, Grant
from ..realtime.message import ChatRequest, FrameError, is_valid_name, parse_chat, parse_object
from ..realtime.rate_limit import TokenBucket
from ..runtime import ChatRuntime
from .access import NAME_RULE, Refused
from .auth import bearer_token

__all__ = ["PUBLISH_SCOPE", "SYSTEM_USER", "Publisher", "Publishing"]


# The `scope` word a JWT needs to publish.
PUBLISH_SCOPE: Final = "publish"
# Who a message published with the API key is from, unless it says.
SYSTEM_USER: Final = "system"
# Credentials whose rate-limit buckets are kept: far more than a deployment
# has backends; the least recently used one is forgotten past it (and
# starts full again: a limit, not a ban).
_MAX_BUCKETS: Final = 10_000


def _unauthorized(detail: str) -> Refused:
    return Refused(401, "unauthorized", detail, **{"WWW-Authenticate": "Bearer"})


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
            Refused: 401 for a missing or unknown credential, 403 for
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
            raise Refused(403, "forbidden", "the token's scope does not include publish")
        return Publisher(f"jwt:{claims.user_id}", claims)

    def check_rate(self, publisher: Publisher) -> None:
        """Take one message from `publisher`'s bucket.

        Raises:
            Refused: 429 `rate_limited`, with `Retry-After`, when empty.
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
            raise Refused(
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
            Refused: 400 for a bad body, 403 for a room the credential
                may not publish in or a message the `on_message` hook
                dropped, 503 when it may not have been published (retry with
                the same `client_msg_id`).
        """
        if not publisher.grant.allows(room):
            raise Refused(403, "forbidden_room", FORBIDDEN_ROOM_DETAIL)
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
            raise Refused(403, "dropped", "the service's on_message hook dropped it")
        try:
            published: Published = await outcome.wait()
        except PublishFailed:
            raise Refused(
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
            raise Refused(400, "invalid_json", "the body is not UTF-8") from None
        try:
            fields = parse_object(text)
            if fields.get("type", "chat") != "chat" or "room" in fields:
                raise Refused(
                    400, "invalid_message", 'the body is {"body", "user_id"?, "client_msg_id"?}'
                )
            request = parse_chat(fields, self._runtime.config.max_body_chars)
        except FrameError as exc:
            raise Refused(400, exc.code.value, exc.detail) from None
        user_id = fields.get("user_id", default_user)
        if not isinstance(user_id, str) or not is_valid_name(user_id):
            raise Refused(400, "invalid_user_id", f"a user_id is {NAME_RULE}")
        return request, user_id
