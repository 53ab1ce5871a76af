"""Replaying a runner checkpoint into a RunnerState, and the handler interfaces fed on the way.

`CheckpointDispatcher` is a pure state machine: it applies one `RunnerCkpt` record to a
`RunnerState` and tells registered handlers what changed. Nothing here sleeps, forks or writes.

Differences from Aurora, all deliberate:
* FAILED runs keep `stop_time` and `return_code` in the rebuilt state (Aurora's transition test
  compared the update's state instead of the previous one, so they were always dropped).
* Records that break the state machine (missing required fields, an unknown state, WAITING over a
  live run) raise `ErrorRecoveringState` subclasses rather than bare AssertionErrors, so corrupt
  input always surfaces as a typed error that callers already handle.
* `from_file` and `iter_updates` see the valid prefix of a checkpoint whose last record is torn,
  instead of losing the whole task state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from thermos.common.recordio import RecordIO, ThriftCodec, ThriftRecordReader, iter_records
from thermos.gen.thermos.ttypes import (
    ProcessState,
    ProcessStatus,
    RunnerCkpt,
    RunnerHeader,
    RunnerState,
    TaskState,
    TaskStatus,
)

log = logging.getLogger(__name__)

TERMINAL_PROCESS_STATES = frozenset(
    (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.KILLED, ProcessState.LOST))


class UniversalStateHandler:
    """Told about every transition; the runner uses it to append records to its checkpoint."""

    def on_process_transition(self, state: ProcessState, process_update: ProcessStatus) -> None:
        pass

    def on_task_transition(self, state: TaskState, task_update: TaskStatus) -> None:
        pass

    def on_initialization(self, header: RunnerHeader) -> None:
        pass


class ProcessStateHandler:
    """One method per ProcessState, called after the run's state has been updated."""

    def on_waiting(self, process_update: ProcessStatus) -> None:
        pass

    def on_forked(self, process_update: ProcessStatus) -> None:
        pass

    def on_running(self, process_update: ProcessStatus) -> None:
        pass

    def on_success(self, process_update: ProcessStatus) -> None:
        pass

    def on_failed(self, process_update: ProcessStatus) -> None:
        pass

    def on_lost(self, process_update: ProcessStatus) -> None:
        pass

    def on_killed(self, process_update: ProcessStatus) -> None:
        pass


class TaskStateHandler:
    """One method per TaskState."""

    def on_active(self, task_update: TaskStatus) -> None:
        pass

    def on_cleaning(self, task_update: TaskStatus) -> None:
        pass

    def on_finalizing(self, task_update: TaskStatus) -> None:
        pass

    def on_success(self, task_update: TaskStatus) -> None:
        pass

    def on_failed(self, task_update: TaskStatus) -> None:
        pass

    def on_killed(self, task_update: TaskStatus) -> None:
        pass

    def on_lost(self, task_update: TaskStatus) -> None:
        pass


# update state -> (allowed previous states, fields that must be present and are copied)
_S = ProcessState
# (`state` itself is always copied.)
_TRANSITIONS: dict[int, tuple[frozenset[int | None], tuple[str, ...]]] = {
    _S.WAITING: (frozenset((None,)), ("process",)),
    _S.FORKED: (frozenset((_S.WAITING,)), ("fork_time", "coordinator_pid")),
    _S.RUNNING: (frozenset((_S.FORKED,)), ("start_time", "pid")),
    _S.SUCCESS: (frozenset((_S.RUNNING,)), ("stop_time", "return_code")),
    _S.FAILED: (frozenset((_S.WAITING, _S.RUNNING)), ()),
    _S.KILLED: (frozenset((_S.FORKED, _S.RUNNING)), ("stop_time", "return_code")),
    _S.LOST: (frozenset((_S.FORKED, _S.RUNNING)), ()),
}
# FAILED carries these when it comes from a run that really ran (RUNNING -> FAILED); a WAITING ->
# FAILED record (the fork itself failed) has neither.
_FAILED_OPTIONAL = ("stop_time", "return_code")


_PROCESS_METHOD = {value: "on_" + name.lower() for value, name in ProcessState._VALUES_TO_NAMES.items()}
_TASK_METHOD = {value: "on_" + name.lower() for value, name in TaskState._VALUES_TO_NAMES.items()}


class CheckpointDispatcher:
    """Applies RunnerCkpt records to a RunnerState and fans the transitions out to handlers."""

    class Error(Exception):
        """Base of every dispatcher failure."""

    class ErrorRecoveringState(Error):
        """The stream cannot be replayed into a consistent state."""

    class InvalidSequenceNumber(Error):
        """A process record does not follow the previous one (seq != last + 1)."""

    class InvalidHandler(Error):
        """register_handler was given something that is not a known handler type."""

    class InvalidStateTransition(ErrorRecoveringState):
        """A process record is not allowed after the run's current state, or lacks its fields."""

    def __init__(self) -> None:
        self._universal: list[UniversalStateHandler] = []
        self._process: list[ProcessStateHandler] = []
        self._task: list[TaskStateHandler] = []

    # ---- reading files -------------------------------------------------------------------

    @classmethod
    def iter_updates(cls, filename: str) -> Iterator[RunnerCkpt]:
        """Yield every whole record of a runner checkpoint; a torn last record is skipped."""
        try:
            with open(filename, "rb") as fp:
                yield from ThriftRecordReader(fp, RunnerCkpt)
        except (OSError, RecordIO.Error) as err:
            raise cls.ErrorRecoveringState("cannot read checkpoint %s: %s" % (filename, err)) from err

    @classmethod
    def iter_statuses(cls, filename: str) -> Iterator[TaskStatus]:
        for update in cls.iter_updates(filename):
            if update.task_status is not None:
                yield update.task_status

    @classmethod
    def from_file(cls, filename: str, truncate: bool = False) -> RunnerState | None:
        """Rebuild the state a checkpoint describes, or None (logged) if it cannot be replayed."""
        state = RunnerState(processes={})
        dispatcher = cls()
        dispatch, dispatch_process = dispatcher.dispatch, dispatcher._dispatch_process
        try:
            with open(filename, "rb") as fp:
                for update in iter_records(fp, ThriftCodec(RunnerCkpt)):
                    # the hot path of a replay, without dispatch()'s branch ladder
                    process_status = update.process_status
                    if process_status is not None and update.runner_header is None \
                            and update.task_status is None:
                        dispatch_process(state, process_status, False, truncate)
                    else:
                        dispatch(state, update, False, truncate)
        except (OSError, RecordIO.Error) as err:
            log.error("Failed to recover from %s: %s", filename, err)
            return None
        except cls.Error as err:
            log.error("Failed to recover from %s: %s", filename, err)
            return None
        return state

    @classmethod
    def is_terminal(cls, process_status: ProcessStatus) -> bool:
        return process_status.state in TERMINAL_PROCESS_STATES

    # ---- handlers ------------------------------------------------------------------------

    def register_handler(self, handler: object) -> None:
        if isinstance(handler, UniversalStateHandler):
            self._universal.append(handler)
        elif isinstance(handler, ProcessStateHandler):
            self._process.append(handler)
        elif isinstance(handler, TaskStateHandler):
            self._task.append(handler)
        else:
            raise self.InvalidHandler("Unknown handler type %s" % type(handler).__name__)

    # ---- dispatch ------------------------------------------------------------------------

    @classmethod
    def would_update(cls, state: RunnerState, runner_ckpt: RunnerCkpt) -> bool:
        """Whether a process record is news to `state` (used to skip records already replayed)."""
        update = runner_ckpt.process_status
        if update is None:
            return False
        history = state.processes.get(update.process) if state.processes is not None else None
        if not history:
            return True
        return history[-1].seq < update.seq

    def dispatch(self, state: RunnerState, runner_ckpt: RunnerCkpt, recovery: bool = False,
                 truncate: bool = False) -> None:
        """Apply one record to `state` and notify handlers.

        `recovery` only relaxes sequence checking: records already applied are skipped silently.
        """
        if runner_ckpt.runner_header is not None:
            if state.header is not None:
                raise self.ErrorRecoveringState("Attempting to rebind task with different parameters!")
            state.header = runner_ckpt.runner_header
            for handler in self._universal:
                handler.on_initialization(runner_ckpt.runner_header)
        elif runner_ckpt.task_status is not None:
            self._dispatch_task(state, runner_ckpt.task_status, truncate)
        elif runner_ckpt.process_status is not None:
            self._dispatch_process(state, runner_ckpt.process_status, recovery, truncate)
        else:
            raise self.ErrorRecoveringState("Empty RunnerCkpt encountered!")

    def _dispatch_task(self, state: RunnerState, update: TaskStatus, truncate: bool) -> None:
        if update.state not in TaskState._VALUES_TO_NAMES:
            raise self.ErrorRecoveringState("Unknown task state %r in task status" % (update.state,))
        if state.statuses is None or truncate:
            state.statuses = []
        state.statuses.append(update)
        for handler in self._universal:
            handler.on_task_transition(update.state, update)
        if self._task:
            method = _TASK_METHOD[update.state]
            for handler in self._task:
                getattr(handler, method)(update)

    def _dispatch_process(self, state: RunnerState, update: ProcessStatus, recovery: bool,
                          truncate: bool) -> None:
        new_state = update.state
        transition = _TRANSITIONS.get(new_state)
        if transition is None:
            raise self.InvalidStateTransition("Unknown process state %r for process %r" % (
                new_state, update.process))
        seq = update.seq
        if seq is None:
            raise self.InvalidStateTransition("Process record without a sequence number: %s" % update)
        name = update.process
        processes = state.processes
        if processes is None:
            processes = state.processes = {}
        history = processes.get(name)
        current = history[-1] if history else None

        if current is not None and seq != current.seq + 1:
            if recovery:
                return
            raise self.InvalidSequenceNumber(
                "Process %s: expected sequence number %d, got %d" % (name, current.seq + 1, seq))

        if new_state == _S.WAITING:
            if current is not None and current.state not in TERMINAL_PROCESS_STATES:
                raise self.InvalidStateTransition(
                    "Process %s: WAITING while run %d is still %s" % (
                        name, len(history) - 1, ProcessState._VALUES_TO_NAMES.get(current.state)))
            current = ProcessStatus(seq=-1 if current is None else current.seq)
            if history is None or truncate:
                processes[name] = [current]
            else:
                history.append(current)
        elif current is None:
            raise self.ErrorRecoveringState(
                "Encountered potentially out of order process update for %r: %s" % (name, update))

        allowed, fields = transition
        if current.state not in allowed:
            raise self.InvalidStateTransition("Detected invalid state transition %s => %s for process %s" % (
                ProcessState._VALUES_TO_NAMES.get(current.state), ProcessState._VALUES_TO_NAMES[new_state],
                name))
        for field in fields:
            value = getattr(update, field)
            if value is None:
                raise self.InvalidStateTransition("Process %s: %s record (seq %d) lacks %s" % (
                    name, ProcessState._VALUES_TO_NAMES[new_state], seq, field))
            setattr(current, field, value)
        current.state = new_state
        current.seq = seq
        if new_state == _S.FAILED:
            for field in _FAILED_OPTIONAL:
                value = getattr(update, field)
                if value is not None:
                    setattr(current, field, value)

        for handler in self._universal:
            handler.on_process_transition(new_state, update)
        if self._process:
            method = _PROCESS_METHOD[new_state]
            for handler in self._process:
                getattr(handler, method)(update)
