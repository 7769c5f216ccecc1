"""The terminal client, `chat-client` (or `python -m chat_service.client`): a
reference client of protocol v2 on trio-websocket."""

from .connect import ClientOptions, Refused, run_client
from .session import Session

__all__ = ["ClientOptions", "Refused", "Session", "run_client"]
