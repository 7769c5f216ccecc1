"""`chat-client URL [--token T | --token-file F] [--user-id U] [--room R ...] [--json] [--once]`.

Prints the messages of the URL's room (and of each `--room`) as they come;
says each line read on stdin in the URL's room; exits 0 once stdin has ended
and every line said has come back from the server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import trio

from ..realtime.message import DEFAULT_ROOM, is_valid_name
from .connect import ClientOptions, Refused, run_client
from .output import JsonReporter, LineReporter
from .session import Session

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1  # refused by the server, a line refused, or --once timed out
EXIT_USAGE = 2
_WS_PREFIX = "/api/chat-api/ws"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat-client",
        description="Chat in a chat_service room from a terminal or a script.",
    )
    parser.add_argument("url", help="ws://HOST:PORT/api/chat-api/ws/ROOM (lines you type go here)")
    parser.add_argument("--token", help="a JWT, sent as Authorization: Bearer (auth on)")
    parser.add_argument(
        "--token-file",
        type=Path,
        help="a file holding the JWT, read again when the server says it expires (auth on)",
    )
    parser.add_argument("--user-id", help="the name to chat as (auth off)")
    parser.add_argument(
        "--room", action="append", default=[], help="also show this room's messages (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print each chat frame as JSON")
    parser.add_argument(
        "--once",
        action="store_true",
        help="say stdin's lines, wait until each has come back, exit (1 after --timeout)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds --once waits (default 10)"
    )
    parser.add_argument(
        "--reconnect-min", type=float, default=0.5, help="shortest reconnect wait, s (0.5)"
    )
    parser.add_argument(
        "--reconnect-max", type=float, default=15.0, help="longest reconnect wait, s (15)"
    )
    return parser


def _path_room(parser: argparse.ArgumentParser, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.path.startswith(_WS_PREFIX):
        parser.error(f"url must be ws://HOST:PORT{_WS_PREFIX}/ROOM (or wss://)")
    rest = parts.path[len(_WS_PREFIX) :].strip("/")
    room = unquote(rest) if rest else DEFAULT_ROOM
    if not is_valid_name(room):
        parser.error(f"invalid room {room!r}: 1 to 64 of A-Z a-z 0-9 . _ -")
    return room


async def _read_stdin(lines: trio.MemorySendChannel[str]) -> None:
    """Send stdin's non-empty lines to `lines`, then close it at EOF."""
    async with lines:
        while True:
            # A thread, as stdin may be a terminal, a pipe or a file; abandoned
            # on cancellation (a blocking read cannot be interrupted).
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                return
            body = line.rstrip("\r\n")
            if body:
                await lines.send(body)


async def _chat(options: ClientOptions, session: Session, once_within: float | None) -> int:
    """Chat until done; with `once_within`, give up after that many seconds."""
    send, receive = trio.open_memory_channel[str](1)
    with trio.move_on_after(float("inf") if once_within is None else once_within) as deadline:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_stdin, send)
            try:
                await run_client(options, session, receive)
            except Refused as exc:
                session.reporter.notice(str(exc))
                return EXIT_FAILED
            finally:
                nursery.cancel_scope.cancel()
    if deadline.cancelled_caught:
        session.reporter.notice(f"not every line came back within {once_within} s")
        return EXIT_FAILED
    return EXIT_FAILED if session.refused else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the client; the exit code: 0 done, 1 refused or undelivered, 2 usage."""
    parser = _parser()
    args = parser.parse_args(argv)
    room = _path_room(parser, args.url)
    for extra in args.room:
        if not is_valid_name(extra):
            parser.error(f"invalid --room {extra!r}: 1 to 64 of A-Z a-z 0-9 . _ -")
    if not 0 < args.reconnect_min <= args.reconnect_max:
        parser.error("need 0 < --reconnect-min <= --reconnect-max")
    reporter = JsonReporter() if args.json else LineReporter()
    token = args.token
    if token is None and args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            parser.error(f"cannot read --token-file: {exc}")
    session = Session(room, args.room, reporter, token=token, token_file=args.token_file)
    options = ClientOptions(
        args.url,
        user_id=args.user_id,
        reconnect_min=args.reconnect_min,
        reconnect_max=args.reconnect_max,
    )
    try:
        return trio.run(_chat, options, session, args.timeout if args.once else None)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
