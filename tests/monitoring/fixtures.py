"""Hand-built checkpoint roots: task JSON, runner and coordinator checkpoints, logs and sandboxes."""

from __future__ import annotations

import json
import os

from thermos.common.path import TaskPath
from thermos.gen.thermos.ttypes import ProcessState, RunnerCkpt, TaskState
from thermos.testing import ckpt as synth


def make_task(root: str, task_id: str, state: str = "finished", processes: int = 2, runs: int = 1,
              sandbox: str | None = None, log_lines: int = 3, data_bytes: int = 0,
              ports: dict[str, int] | None = None, mtime: float | None = None) -> str:
    """Write a complete task under `root` and return its sandbox.

    A finished task ends SUCCESS; an active one has every process's last run RUNNING.
    """
    sandbox = sandbox or os.path.join(root, "sandboxes", task_id)
    log_dir = os.path.join(sandbox, ".logs")
    path = TaskPath(root=root, task_id=task_id, log_dir=log_dir)
    os.makedirs(sandbox, exist_ok=True)
    if data_bytes:
        with open(os.path.join(sandbox, "data.bin"), "wb") as fp:
            fp.write(os.urandom(data_bytes))

    records: list[RunnerCkpt] = [synth.task_status(TaskState.ACTIVE),
                                 synth.header(task_id=task_id, sandbox=sandbox, log_dir=log_dir,
                                              user=_user(), uid=os.getuid(), ports=ports)]
    t = 1.7e9
    for p in range(processes):
        name = "process_%d" % p
        coordinator: list[RunnerCkpt] = []
        for run in range(runs):
            last = run == runs - 1
            run_records = synth.process_run(
                name, first_seq=run * 4, t=t, pid=20_000 + p * 10 + run,
                terminal=ProcessState.SUCCESS if last else ProcessState.FAILED,
                return_code=0 if last else 1)
            if last and state == "active":
                run_records = run_records[:3]
            records.extend(run_records)
            coordinator.extend(run_records[1:])
            t += 2.0
            run_dir = path.given(process=name, run=run).getpath("process_logdir")
            os.makedirs(run_dir, exist_ok=True)
            with open(os.path.join(run_dir, "stdout"), "w") as fp:
                fp.writelines("%s run %d line %d\n" % (name, run, i) for i in range(log_lines))
            open(os.path.join(run_dir, "stderr"), "w").close()
        synth.write_stream(path.given(process=name).getpath("process_checkpoint"), coordinator)
    if state == "finished":
        for s in (TaskState.CLEANING, TaskState.FINALIZING, TaskState.SUCCESS):
            records.append(synth.task_status(s, timestamp_ms=int(t * 1000)))
    runner = path.getpath("runner_checkpoint")
    synth.write_stream(runner, records)

    task_json = path.given(state=state).getpath("task_path")
    os.makedirs(os.path.dirname(task_json), exist_ok=True)
    with open(task_json, "w") as fp:
        json.dump({"name": task_id, "processes": []}, fp)
    if mtime is not None:
        os.utime(runner, (mtime, mtime))
        os.utime(task_json, (mtime, mtime))
    return sandbox


def _user() -> str:
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name
