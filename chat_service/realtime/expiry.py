"""Live expiry: a connection lives only as long as its token (protocol v2)."""

from __future__ import annotations

import time

import trio

from .close_codes import CloseCode
from .connection import Connection
from .message import encode

__all__ = ["watch_expiry"]


async def watch_expiry(conn: Connection, *, notice: float, leeway: float) -> None:
    """Send `conn` a `token_expiring` frame `notice` seconds before its
    token's `exp`, and close it with 4002 at `exp` (plus `leeway`, the clock
    skew the token was accepted with), unless a refresh (`conn.regrant`)
    moves `exp` on; every new `exp` gets its own notice.

    `exp` is wall-clock time; the waits are on trio's clock, which is
    compared with the wall clock once, when the watch starts, so a
    `MockClock` drives them. Returns after closing the connection, or at
    once for a grant without `exp`. Cancellation stops the watch and sends
    nothing.
    """
    wall_minus_trio = time.time() - trio.current_time()
    noticed: int | None = None
    while (exp := conn.grant.exp) is not None:
        at_exp = exp - wall_minus_trio  # trio's clock at `exp`
        if noticed != exp and trio.current_time() >= at_exp - notice:
            conn.enqueue(encode({"type": "token_expiring", "exp": exp}))
            noticed = exp
        if trio.current_time() >= at_exp + leeway:
            conn.close(CloseCode.TOKEN_EXPIRED, "token expired")
            return
        with trio.move_on_at(at_exp + leeway if noticed == exp else at_exp - notice):
            await conn.wait_regranted()
