"""CheckpointInspector: which pids a task ever had, and when its checkpoints last changed.

The GC executor uses this to decide whether a task left anything running (the runners,
coordinators and user processes every checkpoint names) and how stale it is. It is a one-shot
read of finished files, so coordinator checkpoints are read whole rather than tailed.
"""

from __future__ import annotations

import logging
import pwd
from typing import NamedTuple

from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.path import TaskPath
from thermos.common.recordio import RecordIO, ThriftRecordReader
from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt, RunnerState

log = logging.getLogger(__name__)


class CheckpointInspection(NamedTuple):
    """What `CheckpointInspector.inspect` found.

    runner_processes: `[(runner_pid, runner_uid, timestamp_ms)]`, one per change of runner.
    coordinator_processes: `{(coordinator_pid, uid, fork_time)}` from FORKED records.
    processes: `{(pid, uid, start_time)}` from RUNNING records.
    """

    runner_latest_update: float
    process_latest_update: float
    runner_processes: list[tuple[int, int, int]]
    coordinator_processes: set[tuple[int, int, float]]
    processes: set[tuple[int, int, float]]


def get_timestamp(process_status: ProcessStatus | None) -> float:
    """The first of fork, start and stop time that a process record carries, else 0."""
    if process_status is None:
        return 0.0
    return process_status.fork_time or process_status.start_time or process_status.stop_time or 0.0


class CheckpointInspector:
    def __init__(self, checkpoint_root: str) -> None:
        self._path = TaskPath(root=checkpoint_root)

    get_timestamp = staticmethod(get_timestamp)

    def inspect(self, task_id: str) -> CheckpointInspection | None:
        """Replay the task's runner and coordinator checkpoints; None if the runner's is unreadable."""
        path = self._path.given(task_id=task_id)
        state = RunnerState(processes={})
        dispatcher = CheckpointDispatcher()
        runner_processes: list[tuple[int, int, int]] = []
        coordinators: set[tuple[int, int, float]] = set()
        processes: set[tuple[int, int, float]] = set()
        uid: int | None = None
        runner_latest = 0.0

        def consume(update: ProcessStatus) -> None:
            if uid is None:
                return
            if update.state == ProcessState.FORKED:
                coordinators.add((update.coordinator_pid, uid, update.fork_time))
            elif update.state == ProcessState.RUNNING:
                processes.add((update.pid, uid, update.start_time))

        runner_pid = None
        try:
            for record in CheckpointDispatcher.iter_updates(path.getpath("runner_checkpoint")):
                dispatcher.dispatch(state, record)
                if record.runner_header is not None:
                    uid = self._uid(record.runner_header.user, record.runner_header.uid)
                elif record.task_status is not None:
                    status = record.task_status
                    if status.runner_pid != runner_pid:
                        runner_processes.append(
                            (status.runner_pid, status.runner_uid or 0, status.timestamp_ms))
                        runner_pid = status.runner_pid
                elif record.process_status is not None:
                    runner_latest = max(runner_latest, get_timestamp(record.process_status))
                    consume(record.process_status)
        except CheckpointDispatcher.Error as err:
            log.debug("Cannot inspect the runner checkpoint of %s: %s", task_id, err)
            return None

        process_latest = runner_latest
        for name in state.processes:
            filename = path.given(process=name).getpath("process_checkpoint")
            try:
                with open(filename, "rb") as fp:
                    for record in ThriftRecordReader(fp, RunnerCkpt):
                        if record.process_status is not None:
                            process_latest = max(process_latest, get_timestamp(record.process_status))
                            consume(record.process_status)
            except FileNotFoundError:
                continue
            except (OSError, RecordIO.Error) as err:
                log.debug("Skipping the rest of %s: %s", filename, err)

        return CheckpointInspection(runner_latest, process_latest, runner_processes, coordinators, processes)

    @staticmethod
    def _uid(user: str | None, uid: int | None) -> int | None:
        """The task user's uid: from pwd, else the one the header recorded (Aurora had no fallback)."""
        if user:
            try:
                return pwd.getpwnam(user).pw_uid
            except KeyError:
                pass
        if uid is None:
            log.error("Could not find user: %s", user)
        return uid
