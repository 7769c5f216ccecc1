"""Where a server's time goes: a summary of a py-spy raw (collapsed) profile.

Each line of py-spy's `--format raw` output is one distinct stack, outermost
frame first, `;`-separated, then a space and how many samples had it. A frame
reads `function (path/to/file.py:line)`.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["layer_of", "summarize"]

# Layers of the stack, matched against a frame's file path in this order.
LAYERS = (
    ("ours (chat_service)", re.compile(r"chat_service/")),
    ("baseline app", re.compile(r"baseline_server\.py")),
    ("Quart / Quart-Trio", re.compile(r"quart(_trio)?/")),
    ("Hypercorn", re.compile(r"hypercorn/")),
    ("wsproto / h11", re.compile(r"(wsproto|h11)/")),
    ("trio", re.compile(r"trio/")),
    ("json", re.compile(r"json/")),
)
OTHER = "other (stdlib, interpreter)"
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


def _function(frame: str) -> str:
    match = _FRAME.match(frame)
    return f"{match['function']} ({match['file']})" if match else frame


def summarize(raw: Path) -> dict[str, Any]:
    """Shares of the samples: by layer of the innermost frame (self time),
    and the top functions by self and by inclusive time, in percent."""
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
        self_layer[layer_of(frames[-1])] += count
        self_function[_function(frames[-1])] += count
        for function in {_function(frame) for frame in frames}:
            inclusive[function] += count

    def shares(counter: Counter[str], limit: int | None = None) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(limit)]

    if total == 0:
        return {"samples": 0}
    return {
        "samples": total,
        "self_by_layer": shares(self_layer),
        "top_self": shares(self_function, TOP),
        "top_inclusive": shares(inclusive, TOP),
    }
