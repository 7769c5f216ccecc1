"""Per-connection rate limiting: a token bucket for frames, and strikes that
close a client which keeps sending past its limit.

Every frame a client sends counts (text or binary, valid or not, chat, ping
or pong): each one costs the server a parse and most cost an answer, so a
flood of pings or garbage is as much a flood as one of chat messages.
Time is read from `trio.current_time()`, so tests drive it with
`trio.testing.MockClock`.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

import trio

from ..config import Config
from ..metrics import Metrics
from .close_codes import CloseCode
from .connection import Connection, FrameHandler
from .message import ErrorCode, error_frame

__all__ = ["RateLimit", "RateLimiter", "TokenBucket", "Verdict", "limit_rate"]

# Longest a client closed with 1008 gets to read what was queued for it
# before the close (its `rate_limited` errors say why): a client that reads
# needs milliseconds, and one that does not cannot hold its socket longer.
POLICY_CLOSE_FLUSH_SECONDS = 1.0

_RATE_LIMITED = error_frame(ErrorCode.RATE_LIMITED, "too many frames; this one was dropped")


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; starts full."""

    __slots__ = ("_burst", "_rate", "_tokens", "_updated")

    def __init__(self, *, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = trio.current_time()

    def take(self) -> bool:
        """Take one token if there is one; whether there was."""
        now = trio.current_time()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def seconds_to_next(self) -> float:
        """Seconds until a token is there, as of the last `take` (0: one is)."""
        return max(0.0, (1.0 - self._tokens) / self._rate)


class Verdict(Enum):
    """What to do with one frame."""

    ACCEPT = "accept"
    REFUSE = "refuse"  # answer `rate_limited`, drop the frame
    CLOSE = "close"  # close the client with 1008


class RateLimiter:
    """The limit of one connection: a token bucket, and strikes.

    A frame without a token is refused; the `strikes`-th refusal within
    `strike_window` seconds closes the client instead. Memory is bounded:
    only the times of the last `strikes` refusals are kept, from the first
    refusal on (most clients are never refused).
    """

    __slots__ = ("_bucket", "_refusals", "_strike_window", "_strikes")

    def __init__(
        self, *, per_second: float, burst: int, strikes: int, strike_window: float
    ) -> None:
        self._bucket = TokenBucket(rate=per_second, burst=burst)
        self._refusals: deque[float] | None = None
        self._strikes = strikes
        self._strike_window = strike_window

    def check(self) -> Verdict:
        """The verdict on one frame arriving now."""
        if self._bucket.take():
            return Verdict.ACCEPT
        now = trio.current_time()
        refusals = self._refusals
        if refusals is None:
            refusals = self._refusals = deque(maxlen=self._strikes)
        refusals.append(now)
        if len(refusals) == self._strikes and now - refusals[0] <= self._strike_window:
            return Verdict.CLOSE
        return Verdict.REFUSE


class RateLimit:
    """`on_frame` behind a `RateLimiter` per connection (`Connection.limiter`,
    made at its first frame), with the `RATE_LIMIT_*` settings of `config`;
    refusals count in `metrics`. One for all connections: a connection holds
    only its limiter's state.

    A refused frame is answered with `error` `rate_limited` and never reaches
    `on_frame`; on the closing strike no more frames are taken and the
    connection is closed with 1008 once what was queued has been sent
    (within POLICY_CLOSE_FLUSH_SECONDS). Calling it is cancelled exactly as
    `on_frame` is; the checks themselves never wait.
    """

    __slots__ = ("_config", "_metrics", "_on_frame")

    def __init__(self, on_frame: FrameHandler, config: Config, metrics: Metrics) -> None:
        self._on_frame = on_frame
        self._config = config
        self._metrics = metrics

    async def __call__(self, conn: Connection, data: str | bytes) -> None:
        limiter = conn.limiter
        if limiter is None:
            config = self._config
            limiter = conn.limiter = RateLimiter(
                per_second=config.rate_limit_per_second,
                burst=config.rate_limit_burst,
                strikes=config.rate_limit_strikes,
                strike_window=config.rate_limit_strike_window,
            )
        verdict = limiter.check()
        if verdict is Verdict.ACCEPT:
            await self._on_frame(conn, data)
        elif verdict is Verdict.REFUSE:
            self._metrics.rate_limit_refusals.inc()
            self._metrics.frame_errors.labels(ErrorCode.RATE_LIMITED.value).inc()
            conn.enqueue(_RATE_LIMITED)
        else:
            conn.finish(
                CloseCode.POLICY_VIOLATION,
                "rate limit exceeded again and again",
                within=POLICY_CLOSE_FLUSH_SECONDS,
            )


def limit_rate(on_frame: FrameHandler, config: Config, metrics: Metrics) -> FrameHandler:
    """`on_frame` behind the `RATE_LIMIT_*` limit of `config` (a `RateLimit`),
    for every connection it is given; with `RATE_LIMIT_PER_SECOND` 0 there
    is no limit and `on_frame` is returned as is."""
    if config.rate_limit_per_second == 0:
        return on_frame
    return RateLimit(on_frame, config, metrics)
