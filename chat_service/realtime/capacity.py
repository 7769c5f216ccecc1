"""Admission of WebSocket clients: at most `MAX_CONNECTIONS` on this
instance, and optionally at most `MAX_CONNECTIONS_PER_USER` per user and
`MAX_CONNECTIONS_PER_IP` per client address.

A slot is taken when the upgrade request is checked, in the same step as
the check (no await in between), and given back when the connection's
handling has ended. So clients still being accepted, joining or closing
count too, and concurrent upgrades can never let one more in than allowed.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["AtCapacity", "Capacity"]


class AtCapacity(Exception):
    """No slot for this client; `status`, `error` and `detail` make the HTTP
    refusal sent instead of the upgrade."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


class Capacity:
    """Counts the clients admitted to this instance, in total, per user and
    per client address.

    `max_per_user` or `max_per_ip` 0 means no such limit.
    """

    def __init__(self, *, max_connections: int, max_per_user: int = 0, max_per_ip: int = 0) -> None:
        self._max = max_connections
        self._max_per_user = max_per_user
        self._max_per_ip = max_per_ip
        self._total = 0
        self._per_user: Counter[str] = Counter()
        self._per_ip: Counter[str] = Counter()

    @property
    def admitted(self) -> int:
        """Clients holding a slot now."""
        return self._total

    def acquire(self, user_id: str, address: str = "") -> None:
        """Take a slot for one client of `user_id` from `address`.

        Raises:
            AtCapacity: the instance is full (503 `at_capacity`), or this user
                or this address has all its connections already (429
                `too_many_connections`).
        """
        if self._total >= self._max:
            raise AtCapacity(503, "at_capacity", "this instance is at capacity; retry later")
        if self._max_per_user and self._per_user[user_id] >= self._max_per_user:
            raise AtCapacity(
                429,
                "too_many_connections",
                f"at most {self._max_per_user} connections per user; close one first",
            )
        if self._max_per_ip and self._per_ip[address] >= self._max_per_ip:
            raise AtCapacity(
                429,
                "too_many_connections",
                f"at most {self._max_per_ip} connections per client address; close one first",
            )
        self._total += 1
        self._per_user[user_id] += 1
        self._per_ip[address] += 1

    def release(self, user_id: str, address: str = "") -> None:
        """Give back a slot taken by `acquire(user_id, address)`. A plain
        function, so it is safe in a `finally` of a cancelled task."""
        self._total -= 1
        _decrement(self._per_user, user_id)
        _decrement(self._per_ip, address)


def _decrement(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if not counts[key]:
        del counts[key]
