"""The status-checker interface every executor checker implements.

A checker holds an *opinion* about the task: `None` (no opinion yet), STARTING, RUNNING, or a
terminal Mesos state with a reason. The executor's status manager polls one `ChainedStatusChecker`
over all of them and acts on the combined answer, so checkers never send updates themselves.
States are Mesos `TaskState` names (e.g. ``"TASK_FAILED"``), the form pymesos puts on the wire.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from thermos.executor.task_info import ExecutorTask

TASK_STARTING = "TASK_STARTING"
TASK_RUNNING = "TASK_RUNNING"
TASK_FINISHED = "TASK_FINISHED"
TASK_FAILED = "TASK_FAILED"
TASK_KILLED = "TASK_KILLED"
TASK_LOST = "TASK_LOST"

# The only states an Aurora executor sends (spec §1.1); the last four end the task.
ACTIVE_STATES = frozenset({TASK_STARTING, TASK_RUNNING})
TERMINAL_STATES = frozenset({TASK_FINISHED, TASK_FAILED, TASK_KILLED, TASK_LOST})


@dataclass(frozen=True)
class StatusResult:
    """One opinion: a Mesos TaskState name and the message users see (None only for STARTING)."""

    reason: str | None
    status: str

    def __post_init__(self) -> None:
        if self.status not in ACTIVE_STATES | TERMINAL_STATES:
            raise ValueError("not a Mesos TaskState an executor may send: %r" % (self.status,))

    @property
    def terminal(self) -> bool:
        """True when this result ends the task."""
        return self.status in TERMINAL_STATES


class StatusChecker:
    """Base class: override `status`; `start`/`stop` default to doing nothing (stateless checkers).

    `status` is polled from the status manager's thread, `start`/`stop` are called from the
    executor's lifecycle thread; implementations must tolerate that.
    """

    @property
    def name(self) -> str:
        """The name metrics and logs use; Aurora's checkers override it (e.g. `health_checker`)."""
        return type(self).__name__

    @property
    def status(self) -> StatusResult | None:
        """The current opinion, or None for "nothing to say"."""
        return None

    def start(self) -> None:
        """Begin observing (threads, connections). Called once, before the first poll."""

    def stop(self) -> None:
        """Stop observing and release what `start` acquired. Idempotent."""


class ChainedStatusChecker(StatusChecker):
    """Combine checkers by precedence: terminal > STARTING > RUNNING > None (spec §1.3).

    The first terminal result seen is latched forever, so a checker that later changes its mind
    (a health check recovering, a kill manager re-armed) cannot resurrect a dying task. Among
    RUNNING results the first checker's reason wins, as in Aurora.
    """

    def __init__(self, checkers: Sequence[StatusChecker]) -> None:
        self._checkers = list(checkers)
        self._latched: StatusResult | None = None
        self._lock = threading.Lock()

    @property
    def checkers(self) -> list[StatusChecker]:
        """The chained checkers in precedence order (a copy)."""
        return list(self._checkers)

    @property
    def status(self) -> StatusResult | None:
        """The combined opinion; raises TypeError if a checker returns something else."""
        with self._lock:
            if self._latched is not None:
                return self._latched
            current: StatusResult | None = None
            for checker in self._checkers:
                result = checker.status
                if result is None:
                    continue
                if not isinstance(result, StatusResult):
                    raise TypeError("%s.status returned %r, not a StatusResult" % (checker.name, result))
                if result.terminal:
                    self._latched = result
                    return result
                if result.status == TASK_STARTING:
                    current = result
                elif current is None:
                    current = result
            return current

    def start(self) -> None:
        """Start every checker in order."""
        for checker in self._checkers:
            checker.start()

    def stop(self) -> None:
        """Stop every checker in order; one failing does not keep the others running."""
        errors: list[BaseException] = []
        for checker in self._checkers:
            try:
                checker.stop()
            except Exception as e:  # collected; the first is re-raised below
                errors.append(e)
        if errors:
            raise errors[0]


class StatusCheckerProvider(Protocol):
    """Builds a checker for one decoded task, or None when the task needs none (e.g. no announce).

    `sandbox_root` is the task's sandbox directory as the executor sees it (None when there is
    none yet, e.g. Docker before the container starts).
    """

    def from_task(self, task: ExecutorTask, sandbox_root: str | None) -> StatusChecker | None:
        """Return a new, not yet started checker for `task`, or None."""
        ...
