"""Structured logs: one line per event, JSON (`LOG_FORMAT=json`) or
key=value, with the event's fields (`client_id`, `user_id`, `room`, ...);
and repeated identical warnings rate-limited, with a count of what was
suppressed.

Code logs through the standard `logging` module and hands an event's
fields over as `extra=fields(...)`; the message stays the event's name, so
the same line reads well in either format.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = [
    "LOG_FORMATS",
    "REPEAT_WINDOW_SECONDS",
    "JsonFormatter",
    "KeyValueFormatter",
    "RepeatLimiter",
    "StructuredHandler",
    "configure_logging",
    "fields",
]

LOG_FORMATS = ("text", "json")
# One line of a kind per this many seconds: a reconnect storm of a thousand
# clients costs a line and a count, not a thousand lines; a new kind of
# trouble still shows at once.
REPEAT_WINDOW_SECONDS = 10.0
_FIELDS = "fields"


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: the event's fields, shown after its message."""
    return {_FIELDS: values}


def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    values: dict[str, Any] = getattr(record, _FIELDS, {})
    return values


def _text(value: Any) -> str:
    """A key=value value: bare when it is one plain word, else JSON-quoted."""
    text = str(value)
    if text and all(c.isprintable() and c not in ' "=' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger> <message> key=value ...` on one line; a
    traceback (only where one is logged) follows on its own lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extra = _fields_of(record)
        if not extra:
            return line
        return line + " " + " ".join(f"{key}={_text(value)}" for key, value in extra.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts` (Unix seconds), `level`, `logger`,
    `message`, the event's fields, and `exception` (the traceback as one
    string) where one is logged."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields_of(record).items():
            line.setdefault(key, value if isinstance(value, int | float | bool) else str(value))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class RepeatLimiter(logging.Filter):
    """Lets one warning (or worse) of a kind through per `window` seconds;
    the kind is the logger, the level and the message before its arguments
    and fields. The next one let through carries `suppressed=N`, how many
    were held back meanwhile; `pending()` says what is held back now."""

    def __init__(
        self, window: float = REPEAT_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        # kind -> (when its last line went out, how many were suppressed since)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        seen = self._seen.get(kind)
        if seen is not None and now - seen[0] < self._window:
            self._seen[kind] = (seen[0], seen[1] + 1)
            return False
        self._seen[kind] = (now, 0)
        if seen is not None and seen[1]:
            setattr(record, _FIELDS, {**_fields_of(record), "suppressed": seen[1]})
        return True

    def pending(self) -> list[tuple[tuple[str, int, str], int]]:
        """Each kind with warnings held back since its last line, and how many."""
        return [(kind, n) for kind, (_, n) in self._seen.items() if n]


class StructuredHandler(logging.StreamHandler[TextIO]):
    """A stream handler that, when closed (at exit), logs one line per kind
    of warning still held back by its `RepeatLimiter`, with the count."""

    def __init__(self, stream: TextIO, limiter: RepeatLimiter) -> None:
        super().__init__(stream)
        self.limiter = limiter
        self.addFilter(limiter)

    def close(self) -> None:
        for (name, _, message), count in self.limiter.pending():
            # At INFO, so that the limiter lets every kind's count through.
            record = logging.LogRecord(
                name, logging.INFO, __file__, 0, "repeated warnings suppressed", None, None
            )
            setattr(record, _FIELDS, {"warning": message, "suppressed": count})
            self.handle(record)
        super().close()


def configure_logging(level: str, log_format: str, stream: TextIO = sys.stderr) -> None:
    """Send every log record of the process (ours and the libraries') to
    `stream`, one line each, as `log_format` (`text`: key=value, `json`),
    from `level` up, with repeated warnings rate-limited."""
    handler = StructuredHandler(stream, RepeatLimiter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
