"""Where a server's time goes: a summary of a py-spy raw (collapsed) profile.

Each line of py-spy's `--format raw` output is one distinct stack, outermost
frame first, `;`-separated, then a space and how many samples had it. A frame
reads `function (path/to/file.py:line)`, with the full path (`--full-filenames`).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["layer_of", "path_of", "summarize"]

# Layers of the stack, matched against a frame's file path in this order.
LAYERS = (
    ("ours (chat_service)", re.compile(r"/chat_service/")),
    ("baseline app", re.compile(r"/bench/baseline_server\.py")),
    ("Quart / Quart-Trio", re.compile(r"quart(_trio)?/")),
    ("Hypercorn", re.compile(r"hypercorn/")),
    ("wsproto / h11", re.compile(r"(wsproto|h11)/")),
    ("trio", re.compile(r"trio/")),
    ("json", re.compile(r"json/")),
)
OTHER = "other (stdlib, interpreter)"
# What a sample was doing, by the first of these its stack matches (any
# frame). py-spy reads trio's coroutine stacks from their innermost resumed
# frame, so a stack may start anywhere in the send path.
PATHS = (
    (
        "send path (sender task -> Quart -> Hypercorn -> socket)",
        re.compile(
            r"_send_loop|_sender|protocol_send|app_send|send_data|TrioWebsocket\.send"
            r"|stream_send|_send_wsproto_event|send_all"
        ),
    ),
    (
        "receive path (socket -> Hypercorn -> Quart -> handler -> fan-out)",
        re.compile(r"_receive_loop|_read_data|protocol_receive|_on_frame|deliver|handle_events"),
    ),
    ("socket syscalls (stack cut short: send or receive)", re.compile(r"trio/_socket\.py")),
    ("trio scheduler (run loop, epoll)", re.compile(r"trio/_core/")),
)
# Frames every stack passes through; they say nothing about where time goes.
_ROOTS = re.compile(r"<frozen runpy>|__main__\.py|^(run|unrolled_run) \(.*trio/_core/_run\.py")
# How many functions each top list shows.
TOP = 15
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def layer_of(frame: str) -> str:
    """The layer a frame's file belongs to (LAYERS, else OTHER)."""
    match = _FRAME.match(frame)
    path = match["file"] if match else frame
    for name, pattern in LAYERS:
        if pattern.search(path):
            return name
    return OTHER


def path_of(frames: list[str]) -> str:
    """What a sampled stack was doing (PATHS, else OTHER)."""
    for name, pattern in PATHS:
        if any(pattern.search(frame) for frame in frames):
            return name
    return "other"


def _short(path: str) -> str:
    """`path` from its package on (`trio/_socket.py`, `chat_service/hub.py`, `contextlib.py`)."""
    match = (
        re.search(r"/site-packages/(.*)", path)
        or re.search(r"/((chat_service|bench)/.*)", path)
        or re.search(r"/lib/python3\.\d+/(.*)", path)
    )
    return match[1] if match else path


def _function(frame: str) -> str:
    match = _FRAME.match(frame)
    return f"{match['function']} ({_short(match['file'])})" if match else frame


def summarize(raw: Path) -> dict[str, Any]:
    """Shares of the samples, in percent: by what the stack was doing, by
    layer of the innermost frame (self time), and the top functions by self
    and by inclusive time."""
    by_path: Counter[str] = Counter()
    self_layer: Counter[str] = Counter()
    self_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        by_path[path_of(frames)] += count
        self_layer[layer_of(frames[-1])] += count
        self_function[_function(frames[-1])] += count
        for function in {_function(frame) for frame in frames if not _ROOTS.search(frame)}:
            inclusive[function] += count

    def shares(counter: Counter[str], limit: int | None = None) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(limit)]

    if total == 0:
        return {"samples": 0}
    return {
        "samples": total,
        "by_path": shares(by_path),
        "self_by_layer": shares(self_layer),
        "top_self": shares(self_function, TOP),
        "top_inclusive": shares(inclusive, TOP),
    }
