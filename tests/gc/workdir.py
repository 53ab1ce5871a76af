"""A synthetic Mesos agent work_dir whose executor runs hold real checkpoints written by thermos_runner.

Each task gets its own run, laid out as the Aurora executor lays it out (mesos.md §5):
`<work_dir>/slaves/<sid>/frameworks/<fid>/executors/thermos-<task>/runs/<cid>/` with the checkpoint
root `checkpoints/` and the task sandbox `sandbox/` inside it, the agent's `latest` symlinks, and
`meta/.../runs/<cid>/executor.sentinel` once the "executor" has exited.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass

import psutil

from thermos.common.ckpt import CheckpointDispatcher
from thermos.config.schema import Process, Resources, Task
from thermos.gen.thermos.ttypes import ProcessState, TaskState
from thermos.testing.wait import wait_until

TERMINAL = (TaskState.SUCCESS, TaskState.FAILED, TaskState.KILLED, TaskState.LOST)


@dataclass
class Run:
    task_id: str
    path: str  # the run directory (MESOS_DIRECTORY)
    meta: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return os.path.join(self.path, "checkpoints")

    @property
    def sandbox(self) -> str:
        return os.path.join(self.path, "sandbox")

    @property
    def runner_checkpoint(self) -> str:
        return os.path.join(self.root, "checkpoints", self.task_id, "runner")

    def state(self):
        return CheckpointDispatcher.from_file(self.runner_checkpoint) if os.path.exists(
            self.runner_checkpoint) else None

    def task_state(self) -> int | None:
        state = self.state()
        return state.statuses[-1].state if state and state.statuses else None

    def finish_executor(self) -> None:
        """What the agent does when the executor exits: write executor.sentinel."""
        open(os.path.join(self.meta, "executor.sentinel"), "w").close()

    def exists(self) -> bool:
        """Whether anything of the task is left: its checkpoints, its task record or its sandbox."""
        records = [os.path.join(self.root, "tasks", state, self.task_id) for state in ("active", "finished")]
        paths = (os.path.dirname(self.runner_checkpoint), self.sandbox, *records)
        return any(os.path.lexists(path) for path in paths)


class WorkDir:
    def __init__(self, path: str, agent_id: str | None = None, framework_id: str | None = None) -> None:
        self.path = path
        self.agent_id = agent_id or "%s-S0" % uuid.uuid4()
        self.framework_id = framework_id or "%s-0000" % uuid.uuid4()
        self.runs: list[Run] = []

    def new_run(self, task_id: str, sentinel: bool = True) -> Run:
        rel = ("slaves", self.agent_id, "frameworks", self.framework_id, "executors", "thermos-" + task_id,
               "runs")
        runs, meta_runs = os.path.join(self.path, *rel), os.path.join(self.path, "meta", *rel)
        cid = str(uuid.uuid4())
        run = Run(task_id, os.path.join(runs, cid), os.path.join(meta_runs, cid))
        os.makedirs(run.path)
        os.makedirs(os.path.join(run.meta, "pids"))
        agents = (os.path.join(self.path, "slaves"), os.path.join(self.path, "meta", "slaves"))
        for parent in (runs, meta_runs, *agents):
            link = os.path.join(parent, "latest")
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(cid if parent in (runs, meta_runs) else self.agent_id, link)
        if sentinel:
            run.finish_executor()
        self.runs.append(run)
        return run

    def run_task(self, task_id: str, cmdline: str = "echo hello", wait: bool = True, sentinel: bool = True,
                 mtime: float | None = None) -> Run:
        """Run a one-process task with a real thermos_runner in a new executor run."""
        run = self.new_run(task_id, sentinel=sentinel)
        task = Task(name=task_id, processes=[Process(name="main", cmdline=cmdline, min_duration=0)],
                    resources=Resources(cpu=0.1, ram=16 * 1024 * 1024, disk=16 * 1024 * 1024))
        task_json = os.path.join(run.path, "task.json")
        from thermos.config.loader import ThermosTaskWrapper

        ThermosTaskWrapper(task).to_file(task_json)
        cmd = [sys.executable, "-m", "thermos.runner", "--thermos_json", task_json, "--sandbox", run.sandbox,
               "--checkpoint_root", run.root, "--task_id", task_id]
        with open(os.path.join(run.path, "runner.log"), "wb") as log:
            run.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            assert run.proc.wait(timeout=60) == 0, open(os.path.join(run.path, "runner.log")).read()
            assert run.task_state() in TERMINAL
        else:
            wait_until(lambda: _main_running(run), timeout=60)
        if mtime is not None:
            age(run, mtime)
        return run

    def stale_task(self, task_id: str, mtime: float | None = None) -> Run:
        """A task whose runner was SIGKILLed while it ran: the checkpoint still says ACTIVE."""
        run = self.run_task(task_id, "sleep 600", wait=False)
        assert run.proc is not None
        descendants = psutil.Process(run.proc.pid).children(recursive=True)
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait(timeout=10)
        for child in descendants:
            try:
                child.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(descendants, timeout=10)
        assert run.task_state() == TaskState.ACTIVE
        if mtime is not None:
            age(run, mtime)
        return run

    def stop_all(self) -> None:
        """Kill every runner still alive (and the processes it started)."""
        for run in self.runs:
            if run.proc is not None and run.proc.poll() is None:
                try:
                    victims = psutil.Process(run.proc.pid).children(recursive=True)
                except psutil.Error:
                    victims = []
                run.proc.kill()
                run.proc.wait(timeout=10)
                for child in victims:
                    try:
                        child.kill()
                    except psutil.Error:
                        pass


def _main_running(run: Run) -> bool:
    state = run.state()
    runs = (state.processes or {}).get("main") if state else None
    return bool(runs and runs[-1].state == ProcessState.RUNNING)


def age(run: Run, mtime: float) -> None:
    """Make the task look untouched since `mtime` (its runner checkpoint is what GC ages by)."""
    os.utime(run.runner_checkpoint, (mtime, mtime))
