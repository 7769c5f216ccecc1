"""The real-time core: rooms, connections, messages and their fan-out."""

from .broadcaster import Broadcaster, LocalBroadcaster
from .close_codes import CloseCode
from .connection import Connection
from .handler import Handler, HandlerConfig
from .hub import Hub
from .message import Message, MessageType

__all__ = [
    "Broadcaster",
    "CloseCode",
    "Connection",
    "Handler",
    "HandlerConfig",
    "Hub",
    "LocalBroadcaster",
    "Message",
    "MessageType",
]
