"""A task's state at any past moment, and every run of every process on one time axis.

Both replay the runner checkpoint from the start; a checkpoint has no index, but it is small and
a replay of one task costs well under a millisecond per hundred records. Records carry their own
clock (the header's launch time, a task status's `timestamp_ms`, a run's fork/start/stop times);
a record without one (WAITING, LOST, a FAILED fork) happened at the time of the record before it.
Times are made monotonic while replaying, so one late-stamped record cannot hide later ones.
"""

from __future__ import annotations

import io
from typing import Any

from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.recordio import RecordIO, iter_records
from thermos.gen.thermos.ttypes import ProcessState, RunnerCkpt, RunnerState, TaskState

from .observed_task import codec

_TERMINAL = {ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.KILLED, ProcessState.LOST}


def record_time(record: RunnerCkpt) -> float | None:
    """The wall-clock time (epoch seconds) a record states, or None if it carries none."""
    if record.runner_header is not None:
        ms = record.runner_header.launch_time_ms
        return ms / 1000.0 if ms is not None else None
    if record.task_status is not None:
        ms = record.task_status.timestamp_ms
        return ms / 1000.0 if ms is not None else None
    update = record.process_status
    if update is None:
        return None
    if update.state == ProcessState.FORKED:
        return update.fork_time
    if update.state == ProcessState.RUNNING:
        return update.start_time
    if update.state in (ProcessState.SUCCESS, ProcessState.KILLED, ProcessState.FAILED):
        return update.stop_time
    return None


def _records(checkpoint: str) -> list[RunnerCkpt]:
    """The whole records of a checkpoint; a torn tail or a corrupt record ends the list."""
    with open(checkpoint, "rb") as fp:
        data = fp.read()
    records = []
    try:
        for record in iter_records(io.BytesIO(data), codec(RunnerCkpt), checkpoint):
            records.append(record)
    except RecordIO.Error:
        pass
    return records


def state_at(checkpoint: str, at_ms: int) -> RunnerState:
    """The RunnerState after every record that happened at or before `at_ms` (epoch ms).

    Raises OSError if the checkpoint cannot be read. A record the state machine rejects ends the
    replay there (the state so far is what a reader of the live file saw, too).
    """
    limit = at_ms / 1000.0
    state = RunnerState(processes={})
    dispatcher = CheckpointDispatcher()
    clock: float | None = None
    for record in _records(checkpoint):
        stamp = record_time(record)
        if stamp is not None:
            clock = stamp if clock is None else max(clock, stamp)
        if clock is not None and clock > limit:
            break
        try:
            dispatcher.dispatch(state, record)
        except CheckpointDispatcher.Error:
            break
    return state


def timeline(checkpoint: str) -> dict[str, Any]:
    """Every run of every process, and every task state, with the time each began and ended.

    Returns `{"start": s, "end": s, "statuses": [{"state", "timestamp"}], "processes": {name:
    [run]}}` where a run is `{"run", "state", "pid", "return_code", "waiting", "forked",
    "started", "stopped"}`; times are epoch seconds or None for a phase the run never reached,
    and `stopped` of a run that ended without a stated time is the time its last record was
    applied. Raises OSError if the checkpoint cannot be read.
    """
    dispatcher = CheckpointDispatcher()
    state = RunnerState(processes={})
    clock: float | None = None
    first: float | None = None
    statuses: list[dict[str, Any]] = []
    processes: dict[str, list[dict[str, Any]]] = {}
    for record in _records(checkpoint):
        stamp = record_time(record)
        if stamp is not None:
            clock = stamp if clock is None else max(clock, stamp)
            first = clock if first is None else first
        try:
            dispatcher.dispatch(state, record)
        except CheckpointDispatcher.Error:
            break
        if record.task_status is not None:
            statuses.append({"state": TaskState._VALUES_TO_NAMES.get(record.task_status.state, "UNKNOWN"),
                             "timestamp": (record.task_status.timestamp_ms or 0) / 1000.0})
            continue
        update = record.process_status
        if update is None:
            continue
        runs = processes.setdefault(update.process, [])
        if update.state == ProcessState.WAITING:
            runs.append({"run": len(runs), "state": "WAITING", "pid": None, "return_code": None,
                         "waiting": clock, "forked": None, "started": None, "stopped": None})
            continue
        if not runs:
            continue
        run = runs[-1]
        run["state"] = ProcessState._VALUES_TO_NAMES.get(update.state, "UNKNOWN")
        if update.state == ProcessState.FORKED:
            run["forked"] = update.fork_time
        elif update.state == ProcessState.RUNNING:
            run["started"], run["pid"] = update.start_time, update.pid
        elif update.state in _TERMINAL:
            run["stopped"] = update.stop_time if update.stop_time is not None else clock
            run["return_code"] = update.return_code
    return {"start": first, "end": clock, "statuses": statuses, "processes": processes}
