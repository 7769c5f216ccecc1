"""A count of live trio tasks that costs nothing to read (for /healthz's leak
checks): a trio instrument sees every task start and end."""

from __future__ import annotations

import trio

__all__ = ["TaskCounter"]


class TaskCounter(trio.abc.Instrument):
    """Counts the tasks started and not yet ended while it is installed
    (`trio.lowlevel.add_instrument`); reading `live` is O(1), unlike
    walking the task tree. Tasks that were running when it was installed
    are not counted."""

    def __init__(self) -> None:
        self._tasks: set[trio.lowlevel.Task] = set()

    @property
    def live(self) -> int:
        """Tasks started since the install that have not ended."""
        return len(self._tasks)

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self._tasks.add(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._tasks.discard(task)
