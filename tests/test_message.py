"""Parsing and encoding of frames (pure functions, no I/O)."""

from __future__ import annotations

import json

import pytest

from chat_service.realtime.message import (
    ChatRequest,
    ErrorCode,
    FrameError,
    Message,
    Ping,
    Pong,
    is_valid_name,
    parse_client_frame,
)


def parse(text: str) -> object:
    return parse_client_frame(text, max_body_chars=10)


def test_chat_without_type_is_chat() -> None:
    assert parse('{"body":"hi"}') == ChatRequest("hi")
    assert parse('{"type":"chat","body":"hi","client_msg_id":"c1","extra":1}') == ChatRequest(
        "hi", "c1"
    )


def test_ping_echoes_data_and_pong_is_recognised() -> None:
    assert parse('{"type":"ping"}') == Ping('{"type":"pong"}')
    assert parse('{"type":"ping","data":{"a":[1,null]}}') == Ping(
        '{"type":"pong","data":{"a":[1,null]}}'
    )
    assert parse('{"type":"pong"}') == Pong()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", ErrorCode.INVALID_JSON),
        ("{", ErrorCode.INVALID_JSON),
        ('{"body": NaN}', ErrorCode.INVALID_JSON),
        ('{"body": 1e999}', ErrorCode.INVALID_JSON),
        ("[" * 100_000, ErrorCode.INVALID_JSON),
        ('{"n": ' + "9" * 5000 + "}", ErrorCode.INVALID_JSON),
        ("[]", ErrorCode.INVALID_MESSAGE),
        ('"hi"', ErrorCode.INVALID_MESSAGE),
        ("{}", ErrorCode.INVALID_MESSAGE),
        ('{"body":""}', ErrorCode.INVALID_MESSAGE),
        ('{"body":5}', ErrorCode.INVALID_MESSAGE),
        ('{"body":"a","body":"b"}', ErrorCode.INVALID_MESSAGE),
        ('{"body":"\\ud800"}', ErrorCode.INVALID_MESSAGE),
        ('{"body":"a","client_msg_id":7}', ErrorCode.INVALID_MESSAGE),
        ('{"body":"a","client_msg_id":"' + "x" * 65 + '"}', ErrorCode.INVALID_MESSAGE),
        ('{"type":5,"body":"a"}', ErrorCode.INVALID_MESSAGE),
        ('{"type":"welcome"}', ErrorCode.UNKNOWN_TYPE),
        ('{"body":"' + "x" * 11 + '"}', ErrorCode.BODY_TOO_LONG),
        ('{"type":"ping","data":"\\udc00"}', ErrorCode.INVALID_MESSAGE),
    ],
)
def test_refused_frames_have_their_code(text: str, code: ErrorCode) -> None:
    with pytest.raises(FrameError) as refused:
        parse(text)
    assert refused.value.code is code


def test_body_limit_counts_characters_not_bytes() -> None:
    assert parse('{"body":"ééééééééé€"}') == ChatRequest("ééééééééé€")


def test_chat_message_encodes_every_field_once_on_one_line() -> None:
    body = 'line one\nline two <b>"quoted"</b> \x00'
    message = Message("r", "c1", "u1", body=body, client_msg_id="m", id="i1", ts=5)
    text = message.encode()
    assert "\n" not in text
    assert json.loads(text) == {
        "type": "chat",
        "id": "i1",
        "room": "r",
        "client_id": "c1",
        "user_id": "u1",
        "body": body,
        "ts": 5,
        "client_msg_id": "m",
    }


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("lobby", True),
        ("a.b_c-D9", True),
        ("x" * 64, True),
        ("", False),
        ("x" * 65, False),
        ("sp ace", False),
        ("é", False),
        ("a/b", False),
    ],
)
def test_names(name: str, valid: bool) -> None:
    assert is_valid_name(name) is valid
