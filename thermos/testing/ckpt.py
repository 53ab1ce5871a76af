"""Synthetic but realistic runner checkpoints, for tests, benchmarks and the demo.

The records follow exactly what a runner writes (spec §2.4): ACTIVE, the header, then per run
WAITING, FORKED, RUNNING and a terminal record, with the sequence numbers a real runner uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from thermos.common.recordio import ThriftRecordWriter
from thermos.gen.thermos.ttypes import (
    ProcessState,
    ProcessStatus,
    RunnerCkpt,
    RunnerHeader,
    TaskState,
    TaskStatus,
)


def header(task_id: str = "hello_world", sandbox: str = "/tmp/sandbox", log_dir: str | None = None,
           user: str = "root", uid: int | None = 0, ports: dict[str, int] | None = None,
           launch_time_ms: int = 1_700_000_000_000) -> RunnerCkpt:
    return RunnerCkpt(runner_header=RunnerHeader(
        task_id=task_id, launch_time_ms=launch_time_ms, sandbox=sandbox,
        log_dir=log_dir if log_dir is not None else os.path.join(sandbox, ".logs"),
        hostname="localhost", user=user, uid=uid, ports=ports or {}))


def task_status(state: int, timestamp_ms: int = 1_700_000_000_000, runner_pid: int = 4242,
                runner_uid: int = 0) -> RunnerCkpt:
    return RunnerCkpt(task_status=TaskStatus(
        state=state, timestamp_ms=timestamp_ms, runner_pid=runner_pid, runner_uid=runner_uid))


def process_run(name: str, first_seq: int, terminal: int = ProcessState.SUCCESS, t: float = 1.7e9,
                pid: int = 1000, return_code: int = 0) -> list[RunnerCkpt]:
    """The four records of one complete run, starting at WAITING with seq `first_seq`."""
    records = [
        ProcessStatus(seq=first_seq, process=name, state=ProcessState.WAITING),
        ProcessStatus(seq=first_seq + 1, process=name, state=ProcessState.FORKED, fork_time=t,
                      coordinator_pid=pid),
        ProcessStatus(seq=first_seq + 2, process=name, state=ProcessState.RUNNING, start_time=t + 0.01,
                      pid=pid + 1),
    ]
    end = ProcessStatus(seq=first_seq + 3, process=name, state=terminal)
    if terminal in (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.KILLED):
        end.stop_time = t + 1.0
        end.return_code = return_code
    records.append(end)
    return [RunnerCkpt(process_status=r) for r in records]


def runner_stream(processes: int = 3, runs: int = 2, task_id: str = "hello_world",
                  sandbox: str = "/tmp/sandbox", finished: bool = True) -> Iterator[RunnerCkpt]:
    """A whole runner checkpoint: every process fails `runs - 1` times then succeeds."""
    yield task_status(TaskState.ACTIVE)
    yield header(task_id=task_id, sandbox=sandbox)
    t = 1.7e9
    for run in range(runs):
        for p in range(processes):
            last = run == runs - 1
            yield from process_run(
                "process_%d" % p, first_seq=run * 4,
                terminal=ProcessState.SUCCESS if last else ProcessState.FAILED,
                t=t, pid=10_000 + run * 100 + p * 2, return_code=0 if last else 1)
            t += 1.0
    if finished:
        yield task_status(TaskState.CLEANING, timestamp_ms=int(t * 1000))
        yield task_status(TaskState.FINALIZING, timestamp_ms=int(t * 1000))
        yield task_status(TaskState.SUCCESS, timestamp_ms=int(t * 1000))


def write_stream(path: str, records: Iterator[RunnerCkpt] | list[RunnerCkpt]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "ab") as fp:
        writer: ThriftRecordWriter[RunnerCkpt] = ThriftRecordWriter(fp)
        for record in records:
            writer.write(record)
