"""TaskMonitor: an incremental, thread-safe view of one task's runner checkpoint.

A monitor remembers how far into the checkpoint it has read, so a refresh of an unchanged task
costs one `stat`. New bytes are read in one call and framed in memory; a half-written last record
(the runner is mid-append) is left for the next refresh. Corruption in the middle of the stream or
a record the state machine rejects stops the replay at the last good record and is reported by
`error`, instead of being raised at every caller.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import threading
from typing import NamedTuple

from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.path import TaskPath
from thermos.common.recordio import HEADER, HEADER_SIZE, RecordIO, ThriftCodec, iter_records
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



def copy_state(state: RunnerState) -> RunnerState:
    """A copy of `state` that shares nothing mutable with it (much cheaper than deepcopy)."""
    header = copy.copy(state.header)
    if header is not None and header.ports is not None:
        header.ports = dict(header.ports)
    return RunnerState(
        header=header,
        statuses=[copy.copy(s) for s in state.statuses] if state.statuses is not None else None,
        processes={name: [copy.copy(run) for run in runs] for name, runs in (state.processes or {}).items()},
    )


class CheckpointSummary(NamedTuple):
    """The header and task statuses of a runner checkpoint, and why reading stopped early."""

    header: RunnerHeader | None
    statuses: list[TaskStatus]
    error: str | None


# A RunnerCkpt payload starts with its one field's header: type STRUCT (12), then the field id.
_PROCESS_STATUS_PREFIX = bytes((12, 0, 2))


def read_summary(checkpoint: str) -> CheckpointSummary:
    """Header and task statuses only, for listings of thousands of tasks (`thermos status -v`).

    Every frame is checked, but process records (most of a checkpoint) are not decoded, which
    makes this several times cheaper than a replay; a damaged process record therefore goes
    unnoticed here, and is reported by a full replay.
    """
    try:
        with open(checkpoint, "rb") as fp:
            data = fp.read()
    except OSError as err:
        return CheckpointSummary(None, [], "cannot read checkpoint %s: %s" % (
            checkpoint, err.strerror or err))
    frames, offset, size = [], 0, len(data)
    while offset + HEADER_SIZE <= size:
        (length,) = HEADER.unpack_from(data, offset)
        end = offset + HEADER_SIZE + length
        if end > size:
            break  # a torn tail, or an impossible length that the decoder below reports
        if data[offset + HEADER_SIZE:offset + HEADER_SIZE + 3] != _PROCESS_STATUS_PREFIX:
            frames.append(data[offset:end])
        offset = end
    if offset < size:
        frames.append(data[offset:])
    header, statuses = None, []
    try:
        for record in iter_records(io.BytesIO(b"".join(frames)), ThriftCodec(RunnerCkpt), checkpoint):
            if record.runner_header is not None:
                header = header or record.runner_header
            elif record.task_status is not None:
                statuses.append(record.task_status)
    except RecordIO.Error as err:
        return CheckpointSummary(header, statuses, "checkpoint %s is corrupt: %s" % (
            checkpoint, _reason(err)))
    return CheckpointSummary(header, statuses, None)


def _reason(err: Exception) -> str:
    """A RecordIO error without its own ' in <file> at byte N' (callers say where)."""
    return str(err).rsplit(" in ", 1)[0]


class TaskMonitor:
    """Tails `<root>/checkpoints/<task_id>/runner` and answers questions about the task.

    `root` is a checkpoint root, or (as in older Aurora callers) a `TaskPath` carrying one.
    """

    def __init__(self, root: str | TaskPath, task_id: str) -> None:
        self._task_id = task_id
        if isinstance(root, TaskPath):
            pathspec = root.given(task_id=task_id)
            self._runner_ckpt = pathspec.getpath("runner_checkpoint")
            self._active_file, self._finished_file = (
                pathspec.given(state=state).getpath("task_path") for state in ("active", "finished"))
        else:
            # The same paths TaskPath builds, joined directly: observers build thousands of these.
            join = os.path.join
            self._runner_ckpt = join(root, "checkpoints", task_id, "runner")
            self._active_file = join(root, "tasks", "active", task_id)
            self._finished_file = join(root, "tasks", "finished", task_id)
        self._dispatcher = CheckpointDispatcher()
        self._codec: ThriftCodec[RunnerCkpt] = ThriftCodec(RunnerCkpt)  # not thread-safe: used under _lock
        self._state = RunnerState(processes={})
        self._head = 0
        self._error: str | None = None
        self._missing_logged = False
        self._lock = threading.Lock()
        self._apply_states()

    @property
    def task_id(self) -> str:
        return self._task_id

    @property
    def checkpoint(self) -> str:
        return self._runner_ckpt

    @property
    def error(self) -> str | None:
        """Why the replay stopped early (corrupt record, rejected transition), or None."""
        with self._lock:
            return self._error

    def _apply_states(self) -> bool:
        """Apply records appended since the last call; True if any were applied."""
        if self._error is not None:
            return False
        try:
            size = os.stat(self._runner_ckpt).st_size  # the common case: nothing new, one syscall
            if size <= self._head:
                return False
            with open(self._runner_ckpt, "rb") as fp:
                fp.seek(self._head)
                data = fp.read()
        except FileNotFoundError:
            if not self._missing_logged:
                log.debug("Checkpoint %s does not exist yet; will retry", self._runner_ckpt)
                self._missing_logged = True
            return False
        except OSError as err:
            log.warning("Could not read checkpoint %s: %s", self._runner_ckpt, err)
            return False
        consumed = self._replay(data)
        self._head += consumed
        return consumed > 0

    def _replay(self, data: bytes) -> int:
        """Dispatch every whole record of `data`; returns the number of bytes consumed."""
        offset = 0
        dispatch, state = self._dispatcher.dispatch, self._state
        try:
            for record in iter_records(io.BytesIO(data), self._codec, self._runner_ckpt):
                end = offset + HEADER_SIZE + HEADER.unpack_from(data, offset)[0]
                try:
                    dispatch(state, record)
                except CheckpointDispatcher.Error as err:
                    self._fail("%s (record at byte %d)" % (err, self._head + offset))
                    break
                offset = end
        except RecordIO.Error as err:
            self._fail("%s at byte %d" % (_reason(err), self._head + offset))
        return offset

    def _fail(self, reason: str) -> None:
        self._error = "checkpoint %s is corrupt: %s" % (self._runner_ckpt, reason)
        log.error("%s", self._error)

    def refresh(self) -> bool:
        """Apply new checkpoint records; True if there were any."""
        with self._lock:
            return self._apply_states()

    def get_state(self) -> RunnerState:
        """A private copy of the task's current RunnerState."""
        with self._lock:
            self._apply_states()
            return copy_state(self._state)

    def get_sandbox(self) -> str | None:
        """The sandbox from the runner header, or None before the runner has written it."""
        with self._lock:
            self._apply_states()
            header = self._state.header
            return header.sandbox if header is not None else None

    def task_state(self) -> int:
        """The latest TaskState (ACTIVE before anything has been recorded)."""
        with self._lock:
            self._apply_states()
            statuses = self._state.statuses
            return statuses[-1].state if statuses else TaskState.ACTIVE

    @property
    def active(self) -> bool:
        return os.path.exists(self._active_file)

    @property
    def finished(self) -> bool:
        return os.path.exists(self._finished_file)

    def get_active_processes(self) -> list[tuple[ProcessStatus, int]]:
        """`(ProcessStatus, run_index)` of every process whose latest run is RUNNING."""
        with self._lock:
            self._apply_states()
            return [(copy.copy(runs[-1]), len(runs) - 1)
                    for runs in (self._state.processes or {}).values()
                    if runs and runs[-1].state == ProcessState.RUNNING]
