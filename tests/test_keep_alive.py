"""Keep-alive HTTP connections answered before their request's body came:
never left open and unanswered."""

from __future__ import annotations

import contextlib

import trio
import trio.testing

from .helpers import WAIT, RunningServer


async def test_an_answer_before_the_body_never_hangs_the_connection(
    server: RunningServer,
) -> None:
    """Quart answers `GET /healthz` without reading its body; once the
    server is done with the request, the body comes, then another request:
    it is answered, or the connection is closed (it used to stay open and
    unanswered, as Hypercorn's close ran in a task quart-trio cancels)."""
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(
                b"GET /healthz HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\n"
            )
            answer = b""
            while b'"ok"' not in answer:
                answer += await stream.receive_some(65536)
            assert answer.startswith(b"HTTP/1.1 200 ")
            # The server (in this process) is done with the request before its body comes.
            await trio.testing.wait_all_tasks_blocked()
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(b"body")
                await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            rest = b""
            while b'"ok"' not in rest and (chunk := await stream.receive_some(65536)):
                rest += chunk
            assert rest == b"" or rest.startswith(b"HTTP/1.1 200 ")
