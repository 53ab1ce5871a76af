"""Deciding which processes of a task may run now: the dependency graph and the restart rules.

`Planner` is the bare dependency graph.  `TaskPlanner` puts a Thermos `Task` on top of it: order
constraints, daemons (rerun after success), ephemerals (never block completion), ``max_failures``,
the ``min_duration`` restart throttle, the total run cap and Thermos's opt-in exponential
``Process.backoff``.  Both are pure state machines: every time comes from the caller or an injected
clock, nothing sleeps, so the runner can replay a checkpoint through them and tests need no
processes.

Rules kept from Aurora (spec §4): any process may not follow a daemon; a non-ephemeral process may
not follow an ephemeral one; a failed predecessor never unblocks its successor.  Differences, all
in what is reported rather than what is scheduled: `InvalidSchedule` names the processes at fault,
and violated preconditions raise `AssertionError` explicitly so they survive ``python -O``.
"""

from __future__ import annotations

import random as _random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from thermos.common.backoff import Backoff, BackoffPolicy

__all__ = ('CappedTaskPlanner', 'InvalidSchedule', 'Planner', 'ProcessAttributes', 'TaskPlanner')


class InvalidSchedule(Exception):
    """The task's processes cannot be scheduled as configured (cycle, bad order, bad backoff)."""


class Clock(Protocol):
    """Anything with ``time()``: the ``time`` module in production, a fake in tests."""

    def time(self) -> float: ...


def _names(processes: Iterable[str]) -> str:
    return ', '.join(sorted(processes))


class Planner:
    """A set of named processes and who must finish before whom.

    A process is *runnable* once every dependency has **finished**; a failed dependency blocks its
    dependants forever, which is how a failed step stops the rest of a sequential task.
    """

    InvalidSchedule = InvalidSchedule

    def __init__(self, processes: Iterable[str], dependencies: Mapping[str, Iterable[str]]) -> None:
        self._processes: set[str] = set(processes)
        unknown = set(dependencies) - self._processes
        if unknown:
            raise InvalidSchedule(f'dependencies given for unknown processes: {_names(unknown)}')
        self._dependencies: dict[str, frozenset[str]] = {
            process: frozenset(dependencies.get(process, ())) for process in self._processes}
        for process, deps in self._dependencies.items():
            missing = deps - self._processes
            if missing:
                raise InvalidSchedule(
                    f"process '{process}' depends upon unknown processes: {_names(missing)}")
        cycle = self._find_cycle()
        if cycle:
            raise InvalidSchedule(f'Cycles detected in the task schedule! cycle among: {_names(cycle)}')
        self._running: set[str] = set()
        self._finished: set[str] = set()
        self._failed: set[str] = set()

    def _find_cycle(self) -> list[str]:
        """One dependency cycle (its members), or an empty list if the graph is acyclic."""
        remaining = set(self._processes)
        while True:  # peel off processes whose dependencies are all outside `remaining`
            free = {p for p in remaining if not self._dependencies[p] & remaining}
            if not free:
                break
            remaining -= free
        if not remaining:
            return []
        # Every leftover process depends on another leftover, so following dependencies from any of
        # them must revisit a process; the stretch between the two visits is a cycle.
        path: list[str] = []
        seen: dict[str, int] = {}
        process = min(remaining)
        while process not in seen:
            seen[process] = len(path)
            path.append(process)
            process = min(self._dependencies[process] & remaining)
        return path[seen[process]:]

    @property
    def processes(self) -> set[str]:
        return set(self._processes)

    @property
    def runnable(self) -> set[str]:
        """Processes not yet running or terminal whose dependencies have all finished."""
        idle = self._processes - self._running - self._finished - self._failed
        return {p for p in idle if self._dependencies[p] <= self._finished}

    @property
    def running(self) -> set[str]:
        return set(self._running)

    @property
    def finished(self) -> set[str]:
        return set(self._finished)

    @property
    def failed(self) -> set[str]:
        return set(self._failed)

    def _require(self, condition: bool, process: str, message: str) -> None:
        if not condition:
            raise AssertionError(f"process '{process}' {message}")

    def set_running(self, process: str) -> None:
        """Mark ``process`` running; it must be runnable already or running (idempotent)."""
        self._require(process not in self._failed, process, 'has failed and cannot run again')
        self._require(process not in self._finished, process, 'has finished and cannot run again')
        self._require(process in self._running or process in self.runnable, process,
                      'is not runnable (its dependencies have not all finished)')
        self._running.add(process)

    def set_finished(self, process: str) -> None:
        self._require(process in self._running, process, 'cannot finish: it is not running')
        self._require(process not in self._failed, process, 'cannot finish: it has failed')
        self._running.discard(process)
        self._finished.add(process)

    def set_failed(self, process: str) -> None:
        self._require(process in self._running, process, 'cannot fail: it is not running')
        self._require(process not in self._finished, process, 'cannot fail: it has finished')
        self._running.discard(process)
        self._failed.add(process)

    def reset(self, process: str) -> None:
        """Return a running process to runnable, e.g. to retry it after a failure."""
        self._require(process in self._running, process, 'cannot be reset: it is not running')
        self._require(process not in self._finished, process, 'cannot be reset: it has finished')
        self._require(process not in self._failed, process, 'cannot be reset: it has failed')
        self._running.discard(process)

    def is_complete(self) -> bool:
        """True once every process has either finished or failed."""
        return self._finished | self._failed == self._processes


@dataclass(frozen=True, slots=True)
class ProcessAttributes:
    """What the TaskPlanner needs from one `Process`, read once so pystachio stays off the hot path."""

    min_duration: float
    is_daemon: bool
    max_failures: int
    is_ephemeral: bool
    backoff: BackoffPolicy | None = None


ProcessFilter = Callable[[Any], bool]


class TaskPlanner:
    """Schedules the processes of one Thermos task (or the part of it that passes a filter).

    Life of a process::

        runnable --set_running--> running --add_success--> finished        (not a daemon)
           ^                        |  |                                    daemon: back to runnable
           |   retries left / lost  |  `--add_failure--> failed            (no retries left)
           `------------------------'                    finished          (ephemeral, no retries)

    A process that ended becomes runnable again only after ``min_duration`` seconds, counted from
    the end of its last run.  With ``Process.backoff`` set the wait is the larger of that and the
    backoff delay (see `thermos.common.backoff.Backoff` for which exits grow it); without it
    everything here is exactly Aurora's behaviour.  Whatever the exit, the run that brings a
    process's successes + failures + losses to ``TOTAL_RUN_LIMIT`` leaves it failed.

    The runner builds two of these from the same task: the regular plan (``final`` is False) and the
    finalizing plan (``final`` is True), via ``process_filter``, which receives each `Process`.
    """

    InvalidSchedule = InvalidSchedule
    INFINITY = sys.float_info.max
    TOTAL_RUN_LIMIT = sys.maxsize

    @staticmethod
    def extract_dependencies(
        task: Any, process_filter: ProcessFilter | None = None
    ) -> tuple[set[str], dict[str, set[str]]]:
        """The names of the processes passing ``process_filter`` and ``{process: {predecessors}}``.

        An order constraint that lies wholly outside the filtered processes belongs to the other
        plan and is ignored; one that straddles the boundary (or is empty) is invalid for both.
        """
        by_name = {proc.name().get(): proc
                   for proc in task.processes() if process_filter is None or process_filter(proc)}
        names = set(by_name)
        dependencies: dict[str, set[str]] = defaultdict(set)
        for constraint in (task.constraints() if task.has_constraints() else ()):
            order = [name.get() for name in constraint.order()]
            if not order:
                raise InvalidSchedule('Invalid process dependencies! an order constraint is empty')
            inside = [name for name in order if name in names]
            if not inside:
                continue
            if len(inside) != len(order):
                outside = set(order) - names
                raise InvalidSchedule(
                    f'Invalid process dependencies! order [{", ".join(order)}] mixes processes of '
                    f'this plan ({_names(inside)}) with processes outside it ({_names(outside)})')
            for before, after in zip(order, order[1:], strict=False):
                if by_name[before].daemon().get():
                    raise InvalidSchedule(
                        f"process '{after}' may not depend upon daemon process '{before}'")
                if by_name[before].ephemeral().get() and not by_name[after].ephemeral().get():
                    raise InvalidSchedule(
                        f"non-ephemeral process '{after}' may not depend upon ephemeral process "
                        f"'{before}'")
                dependencies[after].add(before)
        return names, dependencies

    def __init__(
        self,
        task: Any,
        clock: Clock = time,
        process_filter: ProcessFilter | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        """``random`` feeds backoff jitter; inject a seeded source to make delays reproducible."""
        if process_filter is not None and not callable(process_filter):
            raise TypeError('TaskPlanner process_filter must be callable')
        self._clock = clock
        self._filter = process_filter
        self._planner = Planner(*self.extract_dependencies(task, process_filter))
        self._attributes: dict[str, ProcessAttributes] = {}
        for proc in task.processes():
            if process_filter is not None and not process_filter(proc):
                continue
            name = proc.name().get()
            self._attributes[name] = ProcessAttributes(
                min_duration=proc.min_duration().get(),
                is_daemon=bool(proc.daemon().get()),
                max_failures=proc.max_failures().get(),
                is_ephemeral=bool(proc.ephemeral().get()),
                backoff=self._backoff_policy(name, proc),
            )
        self._ephemerals = frozenset(n for n, a in self._attributes.items() if a.is_ephemeral)
        self._last_terminal: dict[str, float] = {}
        self._failures: dict[str, int] = defaultdict(int)
        self._successes: dict[str, int] = defaultdict(int)
        self._losses: dict[str, int] = defaultdict(int)
        # Only processes that opted into backoff get a start time and a Backoff, so a task without
        # backoff makes exactly the clock calls Aurora made.
        self._backoffs: dict[str, Backoff] = {
            name: Backoff(attrs.backoff, random)
            for name, attrs in self._attributes.items() if attrs.backoff is not None}
        self._started: dict[str, float] = {}

    @staticmethod
    def _backoff_policy(name: str, proc: Any) -> BackoffPolicy | None:
        # Unknown structs (older schemas, test doubles) simply have no backoff.
        has_backoff = getattr(proc, 'has_backoff', None)
        if has_backoff is None or not has_backoff():
            return None
        try:
            return BackoffPolicy.from_config(proc.backoff())
        except ValueError as e:  # the config validator reports InvalidSchedule as a bad task
            raise InvalidSchedule(f"process '{name}' has an invalid backoff: {e}") from e

    def _now(self, timestamp: float | None) -> float:
        return self._clock.time() if timestamp is None else timestamp

    def attributes(self, process: str) -> ProcessAttributes:
        return self._attributes[process]

    def get_wait(self, process: str, timestamp: float | None = None) -> float:
        """Seconds until ``process`` may start again (<= 0: now); 0 if it has never ended."""
        now = self._now(timestamp)
        last = self._last_terminal.get(process)
        if last is None:
            return 0
        backoff = self._backoffs.get(process)
        if backoff is None:
            return self._attributes[process].min_duration - (now - last)
        return max(self._attributes[process].min_duration, backoff.delay) - (now - last)

    def is_ready(self, process: str, timestamp: float | None = None) -> bool:
        return self.get_wait(process, timestamp) <= 0

    def is_waiting(self, process: str, timestamp: float | None = None) -> bool:
        return not self.is_ready(process, timestamp)

    def runnable_at(self, timestamp: float) -> set[str]:
        """Processes whose dependencies allow them to run and whose restart wait is over."""
        return {p for p in self._planner.runnable if self.is_ready(p, timestamp)}

    def waiting_at(self, timestamp: float) -> set[str]:
        """Processes that could run but for their restart wait."""
        return {p for p in self._planner.runnable if not self.is_ready(p, timestamp)}

    @property
    def runnable(self) -> set[str]:
        return self.runnable_at(self._clock.time())

    @property
    def waiting(self) -> set[str]:
        return self.waiting_at(self._clock.time())

    def min_wait(self, timestamp: float | None = None) -> float:
        """How long the runner may sleep: 0 if something can start, INFINITY if nothing ever will."""
        now = self._now(timestamp)
        if self.runnable_at(now):
            return 0
        waits = [self.get_wait(p, now) for p in self.waiting_at(now)]
        return min(waits) if waits else self.INFINITY

    def set_running(self, process: str, timestamp: float | None = None) -> None:
        """Mark a run as started at ``timestamp`` (default: now; the runner passes the fork time).

        The start time only matters for backoff's ``reset_after``; a repeated call for the same run
        keeps the first time.
        """
        was_running = process in self._planner.running
        self._planner.set_running(process)
        if process in self._backoffs and not was_running:
            self._started[process] = self._now(timestamp)

    def has_reached_run_limit(self, process: str) -> bool:
        runs = self._successes[process] + self._failures[process] + self._losses[process]
        return runs >= self.TOTAL_RUN_LIMIT

    def _record_exit(self, process: str, timestamp: float | None, clean: bool) -> None:
        now = self._now(timestamp)
        self._last_terminal[process] = now
        backoff = self._backoffs.get(process)
        if backoff is not None:
            backoff.record_exit(self._started.pop(process, None), now, clean)

    def add_success(self, process: str, timestamp: float | None = None) -> None:
        """A run exited 0: daemons go back to runnable, everything else is finished."""
        self._record_exit(process, timestamp, clean=True)
        self._successes[process] += 1
        if self.has_reached_run_limit(process):
            self._planner.set_failed(process)
        elif self._attributes[process].is_daemon:
            self._planner.reset(process)
        else:
            self._planner.set_finished(process)

    def add_failure(self, process: str, timestamp: float | None = None) -> None:
        """A run failed: retry while under ``max_failures`` (0 = forever), else fail the process.

        An ephemeral process out of retries is *finished*, not failed: it must never fail the task.
        """
        self._record_exit(process, timestamp, clean=False)
        self._failures[process] += 1
        attrs = self._attributes[process]
        if self.has_reached_run_limit(process):
            self._planner.set_failed(process)
        elif attrs.max_failures == 0 or self._failures[process] < attrs.max_failures:
            self._planner.reset(process)
        elif attrs.is_ephemeral:
            self._planner.set_finished(process)
        else:
            self._planner.set_failed(process)

    def lost(self, process: str, timestamp: float | None = None) -> None:
        """A run vanished (or was killed): retry it without counting a failure.

        Losses are still throttled by ``min_duration`` (and backoff) and count toward the run
        cap, so a process that keeps getting lost cannot restart in a tight loop forever.
        """
        self._record_exit(process, timestamp, clean=False)
        self._losses[process] += 1
        if self.has_reached_run_limit(process):
            self._planner.set_failed(process)
        else:
            self._planner.reset(process)

    def set_failed(self, process: str) -> None:
        """Pin a running process failed whatever its retries, e.g. after an operator's kill -9."""
        self._planner.set_failed(process)

    def is_complete(self) -> bool:
        """True when every non-ephemeral process is finished or failed; ephemerals never block."""
        terminal = self._planner.finished | self._planner.failed | self._ephemerals
        return self._planner.processes <= terminal

    @property
    def failed(self) -> set[str]:
        return self._planner.failed

    @property
    def running(self) -> set[str]:
        return self._planner.running

    @property
    def finished(self) -> set[str]:
        return self._planner.finished


class CappedTaskPlanner(TaskPlanner):
    """The planner ``thermos_runner`` uses: at most 100 runs of any one process.

    Without a cap, a process that keeps getting lost restarts forever and floods the checkpoint.
    """

    TOTAL_RUN_LIMIT = 100
