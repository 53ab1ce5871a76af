"""Helpers for end-to-end tests of the real `thermos_executor` under the stand-in agent."""

from __future__ import annotations

import os
import shlex
import socket
import sys
from typing import Any

from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.path import TaskPath
from thermos.gen.thermos.ttypes import RunnerState
from thermos.testing.mesos_agent import ExecutorRun, MesosAgent

THERMOS_EXECUTOR = os.path.join(os.path.dirname(sys.executable), "thermos_executor")
TASK_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "task_server.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(agent: MesosAgent, data: bytes, task_id: str = "t1", flags: str = "--nosetuid",
           **kwargs: Any) -> ExecutorRun:
    """Start thermos_executor as Aurora's scheduler configures it and LAUNCH `data` (TaskInfo.data)."""
    executor_id = "thermos-" + task_id
    run = agent.launch_executor(executor_id, "%s %s" % (shlex.quote(THERMOS_EXECUTOR), flags), **kwargs)
    agent.launch_task(executor_id, agent.task_info(task_id, data, executor_id=executor_id,
                                                   name="www-data/prod/hello"))
    return run


def checkpoint_root(run: ExecutorRun) -> str:
    return os.path.join(run.sandbox, "checkpoints")


def runner_state(run: ExecutorRun, task_id: str) -> RunnerState | None:
    path = TaskPath(root=checkpoint_root(run), task_id=task_id).getpath("runner_checkpoint")
    return CheckpointDispatcher.from_file(path)


def process_pid(run: ExecutorRun, task_id: str, process: str) -> int | None:
    state = runner_state(run, task_id)
    if state is None or not state.processes or not state.processes.get(process):
        return None
    return state.processes[process][-1].pid


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as fp:
            return fp.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def task_server_cmd(port_ref: str, events: str, *extra: str) -> str:
    """A cmdline running tests/harness/task_server.py on `{{thermos.ports[...]}}`."""
    return " ".join([shlex.quote(sys.executable), shlex.quote(TASK_SERVER), port_ref, shlex.quote(events),
                     *(shlex.quote(e) for e in extra)])
