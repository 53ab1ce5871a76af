"""KillManager: turns killTask/shutdown into a status (Aurora's `kill_manager`).

The executor never sends TASK_KILLED from the driver callback; it arms this checker and the status
manager, seeing a terminal result, runs the one shutdown path that sends the one terminal update.
"""

from __future__ import annotations

from thermos.executor.checkers.base import TASK_KILLED, StatusChecker, StatusResult


class KillManager(StatusChecker):
    """None until `kill(reason)`, then TASK_KILLED with that reason; later kills keep the first."""

    def __init__(self) -> None:
        self._result: StatusResult | None = None

    @property
    def name(self) -> str:
        """Aurora's metric name."""
        return "kill_manager"

    @property
    def status(self) -> StatusResult | None:
        """TASK_KILLED once killed, else None."""
        return self._result

    def kill(self, reason: str) -> None:
        """Record the kill; repeating it (schedulers retry kills) changes nothing."""
        if self._result is None:
            self._result = StatusResult(reason, TASK_KILLED)
