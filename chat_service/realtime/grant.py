"""What a connection's credentials allow: who it is, which rooms, until when."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

__all__ = ["FORBIDDEN_ROOM_DETAIL", "AuthError", "Grant", "TokenCheck"]

FORBIDDEN_ROOM_DETAIL = "the token's rooms claim does not cover this room"


class AuthError(Exception):
    """A token is missing or not acceptable; the message says why."""


@dataclass(frozen=True, slots=True)
class Grant:
    """Who a client is and what its token lets it do.

    Attributes:
        user_id: the client's name (a token's `sub`).
        rooms: glob patterns (`fnmatch`: `*`, `?`, `[...]`) of the rooms it
            may subscribe to and publish in (a token's `rooms` claim); None:
            every room.
        exp: when its token expires, in Unix seconds; None: never (auth off).
    """

    user_id: str
    rooms: tuple[str, ...] | None = None
    exp: int | None = None

    def allows(self, room: str) -> bool:
        """Whether `room` matches one of the patterns (always, without any)."""
        return self.rooms is None or any(fnmatchcase(room, pattern) for pattern in self.rooms)


# Verifies a token: its Grant, or AuthError (api.auth.TokenVerifier.verify).
TokenCheck = Callable[[str], Grant]
