"""How the terminal client shows what happens: chat messages on stdout, as
lines for people or JSON lines for scripts; notices on stderr."""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any, TextIO

__all__ = ["JsonReporter", "LineReporter", "printable"]

# Characters a terminal acts on instead of showing (escape sequences, carriage
# returns, line breaks, bidirectional overrides): a body must not be able to
# repaint the screen or fake another line.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with every terminal control character written out as `\\uXXXX`."""
    return _UNPRINTABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


class _Reporter:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr

    def _line(self, stream: TextIO, text: str) -> None:
        stream.write(text + "\n")
        stream.flush()

    def notice(self, text: str) -> None:
        """One line on stderr."""
        self._line(self._err, f"* {printable(text)}")


class LineReporter(_Reporter):
    """`HH:MM:SS #room user: body`, local time, one line per message."""

    def chat(self, frame: dict[str, Any]) -> None:
        """One line on stdout."""
        stamp = time.strftime("%H:%M:%S", time.localtime(int(frame.get("ts", 0)) / 1000))
        who = printable(str(frame.get("user_id", "?")))
        room = printable(str(frame.get("room", "?")))
        self._line(self._out, f"{stamp} #{room} {who}: {printable(str(frame.get('body', '')))}")


class JsonReporter(_Reporter):
    """Each chat frame as received, as one line of JSON."""

    def chat(self, frame: dict[str, Any]) -> None:
        """One JSON line on stdout."""
        self._line(self._out, json.dumps(frame, ensure_ascii=False, separators=(",", ":")))
