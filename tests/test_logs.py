"""The log formats and the limit on repeated warnings, through the standard
`logging` module (a logger, our handler's formatter and filter)."""

from __future__ import annotations

import io
import json
import logging

from chat_service.logs import (
    JsonFormatter,
    KeyValueFormatter,
    RepeatLimiter,
    StructuredHandler,
    fields,
)


def _logger(
    formatter: logging.Formatter, limiter: RepeatLimiter | None = None
) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    if limiter is not None:
        handler.addFilter(limiter)
    logger = logging.getLogger(f"test_logs.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, stream


def test_key_value_lines_quote_what_is_not_one_word() -> None:
    logger, stream = _logger(KeyValueFormatter())
    logger.info("client connected", extra=fields(client_id="ab12", room="r", error="a b=c"))
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(
        " INFO " + logger.name + ' client connected client_id=ab12 room=r error="a b=c"'
    )


def test_json_lines_hold_the_fields() -> None:
    logger, stream = _logger(JsonFormatter())
    logger.warning("slow", extra=fields(client_id="ab12", code=4001))
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "slow"
    assert (record["level"], record["client_id"], record["code"]) == ("WARNING", "ab12", 4001)


def test_repeated_warnings_are_held_back_and_counted() -> None:
    now = [0.0]
    limiter = RepeatLimiter(window=10.0, clock=lambda: now[0])
    logger, stream = _logger(JsonFormatter(), limiter)
    for peer in range(100):  # a storm: one line
        logger.warning("connection closed after a transport error", extra=fields(peer=peer))
    logger.warning("another kind of trouble")  # shows at once
    logger.info("info is never held back")
    logger.info("info is never held back")
    assert limiter.pending() == [
        ((logger.name, logging.WARNING, "connection closed after a transport error"), 99)
    ]
    now[0] = 10.0
    logger.warning("connection closed after a transport error", extra=fields(peer=100))
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["message"] for r in records] == [
        "connection closed after a transport error",
        "another kind of trouble",
        "info is never held back",
        "info is never held back",
        "connection closed after a transport error",
    ]
    assert "suppressed" not in records[0]
    assert (records[-1]["peer"], records[-1]["suppressed"]) == (100, 99)
    assert limiter.pending() == []


def test_what_is_held_back_at_exit_is_counted_in_one_line() -> None:
    stream = io.StringIO()
    handler = StructuredHandler(stream, RepeatLimiter(window=10.0, clock=lambda: 0.0))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test_logs.exit")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for _ in range(5):
            logger.warning("redis unavailable")
    finally:
        logger.removeHandler(handler)
        handler.close()  # what logging.shutdown() does at exit
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["message"] for r in records] == ["redis unavailable", "repeated warnings suppressed"]
    assert (records[1]["warning"], records[1]["suppressed"]) == ("redis unavailable", 4)
