"""The published client-frame schemas and the server's parser agree: a frame
is accepted by `parse_client_frame` exactly when the schemas accept it.

The schemas cannot say what JSON text looks like (syntax, duplicate keys,
unpaired surrogates): the frames here are JSON objects that `json.dumps`
writes, whose strings hold no surrogates (hypothesis's default alphabet).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from hypothesis import example, given
from hypothesis import strategies as st

from chat_service.realtime.message import (
    ChatRequest,
    ClientFrame,
    ErrorCode,
    FrameError,
    Ping,
    Pong,
    Refresh,
    Subscribe,
    Unsubscribe,
    parse_client_frame,
)
from chat_service.realtime.schemas import (
    CLIENT_FRAME_SCHEMA,
    CLIENT_FRAMES,
    DEFAULT_MAX_BODY_CHARS,
)

# Both dialects the schemas are published in: AsyncAPI's default and OpenAPI 3.1's.
VALIDATORS = (
    jsonschema.Draft7Validator(CLIENT_FRAME_SCHEMA),
    jsonschema.Draft202012Validator(CLIENT_FRAME_SCHEMA),
)
PARSED_AS = {
    "chatRequest": ChatRequest,
    "subscribe": Subscribe,
    "unsubscribe": Unsubscribe,
    "clientPing": Ping,
    "clientPong": Pong,
    "refresh": Refresh,
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)


def near(limit: int) -> st.SearchStrategy[str]:
    """Strings a few characters either side of `limit`, some beyond the BMP."""
    return st.builds(
        lambda n, char: char * n,
        st.integers(limit - 2, limit + 2),
        st.sampled_from("a\u00e9\U0001f600"),
    )


frames = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["chat", "subscribe", "unsubscribe", "ping", "pong", "shout", "", "CHAT"]
        )
        | json_values,
        "room": st.sampled_from(["r", "a.b-c_9", "", "no space", "x" * 65]) | json_values,
        "since": st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "epoch": st.text(max_size=4) | near(64) | json_values,
                "seq": st.integers(-2, 2)
                | st.sampled_from([2**53 - 1, 2**53, 2.0**53])
                | st.floats(-1, 3)
                | json_values,
            },
        )
        | json_values,
        "body": st.text(max_size=6) | near(DEFAULT_MAX_BODY_CHARS) | json_values,
        "client_msg_id": st.none() | st.text(max_size=4) | near(64) | json_values,
        "data": json_values,
        "extra": json_values,
    },
)


def parse(frame: Any) -> ClientFrame | FrameError:
    """What the server makes of `frame`: the parsed frame, or why it was refused."""
    try:
        return parse_client_frame(json.dumps(frame), max_body_chars=DEFAULT_MAX_BODY_CHARS)
    except FrameError as refused:
        return refused


@given(frames | json_values)
@example({"body": "x", "client_msg_id": None})
@example({"type": None, "body": "x"})
@example({"type": "chat", "body": "x" * DEFAULT_MAX_BODY_CHARS})
@example({"type": "chat", "body": "x" * (DEFAULT_MAX_BODY_CHARS + 1)})
def test_parser_accepts_exactly_what_the_schema_accepts(frame: Any) -> None:
    parsed = parse(frame)
    for validator in VALIDATORS:
        assert validator.is_valid(frame) == (not isinstance(parsed, FrameError)), parsed
    if isinstance(parsed, FrameError):
        assert parsed.code in (
            ErrorCode.INVALID_MESSAGE,
            ErrorCode.UNKNOWN_TYPE,
            ErrorCode.BODY_TOO_LONG,
            ErrorCode.INVALID_ROOM,
        )
    else:
        (kind,) = [f for f in CLIENT_FRAMES if jsonschema.Draft7Validator(f.schema).is_valid(frame)]
        assert isinstance(parsed, PARSED_AS[kind.key])


def test_every_client_frame_kind_is_parsed() -> None:
    assert {frame.key for frame in CLIENT_FRAMES} == set(PARSED_AS)
