"""Run a task through a real thermos_runner subprocess, for tests and benchmarks.

`RunnerHarness` writes the task's JSON to a temporary root, starts `python -m thermos.runner`
on it, and returns both the runner's own final in-memory state and the state rebuilt from its
checkpoint, so a test can assert that the two agree (Aurora's integration tests do the same).
It can also SIGKILL the runner at chosen moments and restart it, for crash-recovery tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.path import TaskPath
from thermos.common.recordio import ThriftCodec
from thermos.gen.thermos.ttypes import ProcessState, RunnerState, TaskState


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    state: RunnerState | None  # the runner's in-memory state at exit
    reconstructed_state: RunnerState | None  # CheckpointDispatcher.from_file of its checkpoint
    restarts: int = 0
    runner_pids: list[int] = field(default_factory=list)

    @property
    def task_state(self) -> int | None:
        state = self.reconstructed_state
        return state.statuses[-1].state if state and state.statuses else None

    def runs(self, process: str) -> list[Any]:
        state = self.reconstructed_state
        return list(state.processes.get(process, [])) if state and state.processes else []


class RunnerHarness:
    def __init__(self, task: Any, root: str | None = None, task_id: str = "harness_task",
                 portmap: dict[str, int] | None = None, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root or tempfile.mkdtemp(prefix="thermos-harness-")
        self.task_id = task_id
        self.sandbox = os.path.join(self.root, "sandbox", task_id)
        self.checkpoint_root = os.path.join(self.root, "checkpoints")
        self.task_json = os.path.join(self.root, "%s.json" % task_id)
        self.state_file = os.path.join(self.root, "%s.state" % task_id)
        self.portmap = portmap or {}
        self.extra_args = extra_args or []
        self.env = env
        self.pathspec = TaskPath(root=self.checkpoint_root, task_id=task_id)
        from thermos.config.loader import ThermosTaskWrapper

        ThermosTaskWrapper(task).to_file(self.task_json)

    @property
    def runner_checkpoint(self) -> str:
        return self.pathspec.getpath("runner_checkpoint")

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "thermos.runner", "--thermos_json", self.task_json,
               "--sandbox", self.sandbox, "--checkpoint_root", self.checkpoint_root,
               "--task_id", self.task_id, "--dump_state", self.state_file]
        for name, port in self.portmap.items():
            cmd += ["--port", "%s:%d" % (name, port)]
        return cmd + self.extra_args

    def start(self) -> subprocess.Popen[str]:
        """Start a runner. Its stdout/stderr go to files, not pipes: coordinators inherit them
        and outlive a killed runner, so a pipe would never reach EOF."""
        if os.path.exists(self.state_file):
            os.unlink(self.state_file)
        self._starts = getattr(self, "_starts", 0) + 1
        base = os.path.join(self.root, "runner-%d" % self._starts)
        with open(base + ".out", "w") as out, open(base + ".err", "w") as err:
            proc = subprocess.Popen(self.command(), stdout=out, stderr=err, text=True, env=self.env,
                                    start_new_session=True)
        proc.output_files = (base + ".out", base + ".err")  # type: ignore[attr-defined]
        return proc

    @staticmethod
    def output(proc: subprocess.Popen[str]) -> tuple[str, str]:
        out_path, err_path = proc.output_files  # type: ignore[attr-defined]
        with open(out_path) as out, open(err_path) as err:
            return out.read(), err.read()

    def finish(self, proc: subprocess.Popen[str], timeout: float = 120.0) -> RunResult:
        """Wait (bounded) for a runner started with start() and collect its result."""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("runner did not finish within %.0fs:\n%s" % (
                timeout, self.output(proc)[1])) from None
        out, err = self.output(proc)
        return self.result(proc.returncode, out, err, runner_pids=[proc.pid])

    def run(self, timeout: float = 120.0) -> RunResult:
        return self.finish(self.start(), timeout)

    def run_with_kills(self, kill_after: list[float], timeout: float = 180.0) -> RunResult:
        """Start the runner, SIGKILL it after each delay in turn, restart it; finish undisturbed."""
        deadline = time.monotonic() + timeout
        pids = []
        for delay in kill_after:
            proc = self.start()
            pids.append(proc.pid)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        result = self.finish(self.start(), timeout=max(1.0, deadline - time.monotonic()))
        result.runner_pids = pids + result.runner_pids
        result.restarts = len(kill_after)
        return result

    def result(self, returncode: int, out: str, err: str, runner_pids: list[int]) -> RunResult:
        state = None
        if os.path.exists(self.state_file):
            with open(self.state_file, "rb") as fp:
                state = ThriftCodec(RunnerState).decode(fp.read())
        reconstructed = CheckpointDispatcher.from_file(self.runner_checkpoint)
        return RunResult(returncode, out, err, state, reconstructed, runner_pids=runner_pids)

    def wait_for_running(self, process: str, timeout: float = 30.0) -> Any:
        """The ProcessStatus of `process`'s latest run once the checkpoint shows it RUNNING."""
        def running(state: RunnerState) -> Any:
            runs = (state.processes or {}).get(process)
            return runs[-1] if runs and runs[-1].state == ProcessState.RUNNING else None
        return self.wait_for(running, timeout=timeout)

    def wait_for(self, predicate: Any, timeout: float = 30.0, interval: float = 0.01) -> Any:
        """Poll `predicate(state)` on the checkpoint until it returns truthy; bounded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = CheckpointDispatcher.from_file(self.runner_checkpoint) if os.path.exists(
                self.runner_checkpoint) else None
            value = predicate(state) if state is not None else None
            if value:
                return value
            time.sleep(interval)
        raise AssertionError("condition not met within %.1fs" % timeout)


def terminal(state: RunnerState | None) -> bool:
    return bool(state and state.statuses and state.statuses[-1].state in (
        TaskState.SUCCESS, TaskState.FAILED, TaskState.KILLED, TaskState.LOST))
