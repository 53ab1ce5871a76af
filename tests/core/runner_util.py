"""Shared helpers for runner tests: build tasks, run them, compare in-memory and replayed state."""

from __future__ import annotations

import os
from typing import Any

import psutil

from thermos.config.schema import Constraint, Process, Resources, Task
from thermos.gen.thermos.ttypes import ProcessState
from thermos.testing.runner import RunnerHarness, RunResult
from thermos.testing.wait import wait_until  # noqa: F401 - the tests import it from here

RESOURCES = Resources(cpu=0.1, ram=16 * 1024 * 1024, disk=16 * 1024 * 1024)
S = ProcessState


def proc(name: str, cmdline: str, **kw: Any) -> Process:
    kw.setdefault("min_duration", 0)
    return Process(name=name, cmdline=cmdline, **kw)


def task(*processes: Process, order: list[list[str]] | None = None, **kw: Any) -> Task:
    kw.setdefault("resources", RESOURCES)
    constraints = [Constraint(order=o) for o in (order or [])]
    return Task(name=kw.pop("name", "test_task"), processes=list(processes), constraints=constraints, **kw)


def run_task(tmp_path: Any, t: Task, timeout: float = 60.0, **kw: Any) -> RunResult:
    harness = RunnerHarness(t, root=str(tmp_path), **kw)
    result = harness.run(timeout=timeout)
    assert result.returncode == 0, result.stderr
    assert_states_agree(result)
    return result


def assert_states_agree(result: RunResult) -> None:
    """The runner's in-memory state at exit equals the state replayed from its checkpoint."""
    assert result.state is not None, result.stderr
    assert result.reconstructed_state is not None
    assert result.state.header == result.reconstructed_state.header
    assert result.state.statuses == result.reconstructed_state.statuses
    assert result.state.processes == result.reconstructed_state.processes


def states(result: RunResult, process: str) -> list[int]:
    return [run.state for run in result.runs(process)]




def read_pid(path: str) -> int | None:
    try:
        with open(path) as fp:
            text = fp.read().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def sandbox_file(result_root: str, task_id: str, name: str) -> str:
    return os.path.join(result_root, "sandbox", task_id, name)
