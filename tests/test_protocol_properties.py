"""Property-based: random interleavings of arbitrary frames (text, binary,
JSON of any shape, valid chats) from several clients in two rooms.

For every example, on a real server: it stays up; each client gets exactly
the answers the protocol names for its own frames, in order; every valid
chat reaches every member of its room exactly once, all members in one
order and each sender's messages in the order sent; nothing reaches the
other room.

Each Hypothesis example is its own `trio.run` (pytest-trio), with a fresh
server started in the example's own nursery.
"""

from __future__ import annotations

import json
import math
from contextlib import AsyncExitStack
from typing import Any

import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chat_service.realtime.message import is_valid_name

from .conftest import start_server_in
from .helpers import Client, RunningServer, connect
from .test_frame_schemas import json_values

MAX_BODY_CHARS = 20
ROOMS = ("p", "p", "p", "q")  # three clients share a room, one is elsewhere
SYNC = "sync-7f3a"  # ping data no generated frame uses (see `frames`)

Frame = str | bytes
Script = list[tuple[int, Frame]]  # (which client sends it, the frame)
Received = list[dict[str, Any]]


chats = st.fixed_dictionaries(
    {"body": st.text(min_size=1, max_size=MAX_BODY_CHARS + 5)},
    optional={
        "type": st.just("chat"),
        "client_msg_id": st.text(max_size=70) | json_values,
        "unknown": json_values,
    },
)
typed = st.fixed_dictionaries(
    {"type": st.sampled_from(["chat", "ping", "pong", "welcome", ""]) | json_values},
    optional={"body": json_values | st.text(max_size=5), "data": json_values},
)
frames: st.SearchStrategy[Frame] = st.one_of(
    st.one_of(chats, typed, json_values).map(json.dumps),
    st.text(max_size=30),
    st.binary(max_size=30),
)
scripts = st.lists(st.tuples(st.integers(0, len(ROOMS) - 1), frames), max_size=30)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({key for key, _ in pairs}) != len(pairs):
        raise KeyError("duplicate key")
    return dict(pairs)


def _refuse(name: str) -> Any:
    raise ValueError(name)


def expected(frame: Frame, room: str) -> tuple[str, Any]:
    """What the protocol answers to `frame` from a client in `room` alone:
    ("chat", (body, client_msg_id)), ("answer", the frame sent back to the
    sender alone) or ("nothing", None). (A retry is told apart in `check`.)"""
    if isinstance(frame, bytes):
        return "answer", ("error", "binary_not_supported")
    try:
        obj = json.loads(
            frame, object_pairs_hook=_unique, parse_float=_finite, parse_constant=_refuse
        )
    except KeyError:
        return "answer", ("error", "invalid_message")
    except (ValueError, RecursionError):
        return "answer", ("error", "invalid_json")
    if not isinstance(obj, dict):
        return "answer", ("error", "invalid_message")
    kind = obj.get("type", "chat")
    if kind == "ping":
        return "answer", (
            "pong",
            {"type": "pong", **({"data": obj["data"]} if "data" in obj else {})},
        )
    if kind == "pong":
        return "nothing", None
    if not isinstance(kind, str):
        return "answer", ("error", "invalid_message")
    if kind != "chat":
        return "answer", ("error", "unknown_type")
    body, msg_id = obj.get("body"), obj.get("client_msg_id")
    if not isinstance(body, str) or not body:
        return "answer", ("error", "invalid_message")
    if len(body) > MAX_BODY_CHARS:
        return "answer", ("error", "body_too_long")
    if msg_id is not None and not (isinstance(msg_id, str) and len(msg_id) <= 64):
        return "answer", ("error", "invalid_message")
    if "room" in obj and not (isinstance(obj["room"], str) and is_valid_name(obj["room"])):
        return "answer", ("error", "invalid_room")
    if obj.get("room", room) != room:
        return "answer", ("error", "not_subscribed")
    return "chat", (body, msg_id)


def with_retries(outcomes: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """`outcomes` of one sender's frames, a chat reusing a client_msg_id
    becoming the original's `duplicate`, to the sender alone."""
    originals: dict[str, str] = {}
    told: list[tuple[str, Any]] = []
    for kind, value in outcomes:
        if kind == "chat" and value[1] is not None:
            body, msg_id = value
            if msg_id in originals:
                told.append(("answer", ("duplicate", originals[msg_id], msg_id)))
                continue
            originals[msg_id] = body
        told.append((kind, value))
    return told


async def received_until_sync(client: Client) -> list[dict[str, Any]]:
    await client.send({"type": "ping", "data": SYNC})
    received = []
    while (frame := await client.receive()) != {"type": "pong", "data": SYNC}:
        received.append(frame)
    return received


def answer_of(frame: dict[str, Any]) -> tuple[str, Any]:
    if frame["type"] == "chat":
        return "duplicate", frame["body"], frame["client_msg_id"]
    return ("error", frame["code"]) if frame["type"] == "error" else ("pong", frame)


def is_answer(frame: dict[str, Any]) -> bool:
    return frame["type"] != "chat" or frame.get("duplicate", False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=scripts)
@example(script=[(0, b"")])  # found by this test: Quart-Trio turns it into None
async def test_random_frames_from_several_clients(script: Script) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server_in(
            nursery, max_body_chars=MAX_BODY_CHARS, presence_events=False
        )
        client_ids, received = await play(server, script)
        assert server.runtime.unready_reason() is None  # the server is up
        nursery.cancel_scope.cancel()
    check(script, client_ids, received)


async def play(server: RunningServer, script: Script) -> tuple[list[str], list[Received]]:
    """Each client sends its frames of `script`, all clients at once: the
    clients' ids, and what each received."""
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(connect(server.url(r, user_id=f"u{i}")))
            for i, r in enumerate(ROOMS)
        ]
        received: list[Received] = [[] for _ in clients]

        async def send_all(index: int) -> None:
            for _, frame in (step for step in script if step[0] == index):
                await clients[index].send(frame)
            # Its own sync pong: the server has handled every frame it sent.
            received[index] += await received_until_sync(clients[index])

        async with trio.open_nursery() as nursery:  # the clients interleave freely
            for index in range(len(clients)):
                nursery.start_soon(send_all, index)
        for index, client in enumerate(clients):  # every chat of everyone is queued now
            received[index] += await received_until_sync(client)
        return [client.client_id for client in clients], received


def check(script: Script, client_ids: list[str], received: list[Received]) -> None:
    sent_chats: dict[int, list[tuple[str, Any]]] = {}
    for index in range(len(ROOMS)):
        outcomes = with_retries(
            [expected(frame, ROOMS[index]) for i, frame in script if i == index]
        )
        answers = [answer_of(f) for f in received[index] if is_answer(f)]
        assert answers == [value for kind, value in outcomes if kind == "answer"]
        sent_chats[index] = [value for kind, value in outcomes if kind == "chat"]

    for room in set(ROOMS):
        members = [i for i, r in enumerate(ROOMS) if r == room]
        orders = [
            [f for f in received[i] if f["type"] == "chat" and not is_answer(f)] for i in members
        ]
        assert all(order == orders[0] for order in orders), "one order per room"
        order = orders[0]
        assert all(f["room"] == room for f in order), "nothing leaks between rooms"
        assert len({f["id"] for f in order}) == len(order), "no duplicates"
        assert [f["seq"] for f in order] == list(range(1, len(order) + 1)), "seq 1..N, no gap"
        for sender in members:
            mine = [
                (f["body"], f.get("client_msg_id"))
                for f in order
                if f["client_id"] == client_ids[sender]
            ]
            assert mine == sent_chats[sender], "every chat once, in the order sent"
        assert len(order) == sum(len(sent_chats[s]) for s in members)
