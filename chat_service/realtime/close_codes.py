"""The WebSocket close codes of the wire protocol."""

from enum import IntEnum

__all__ = ["CloseCode"]


class CloseCode(IntEnum):
    """Why the server closed a WebSocket (protocol.md, "Close codes")."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the server is shutting down: reconnect
    PROTOCOL_ERROR = 1002  # a frame breaking RFC 6455 (sent by hypercorn_serving.py's stream)
    INVALID_DATA = 1007  # a text frame that is not UTF-8 (likewise)
    POLICY_VIOLATION = 1008  # repeated abuse, e.g. the rate limit again and again
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # at capacity
    HEARTBEAT_TIMEOUT = 4000
    SLOW_CONSUMER = 4001
    TOKEN_EXPIRED = 4002  # the token's exp passed without a valid refresh
