"""A checkpoint root of tasks really run by thermos_runner: finished, failed and active."""

from __future__ import annotations

import os
import signal
import subprocess

import psutil

from thermos.config.schema import Process, Resources, Task
from thermos.testing.runner import RunnerHarness
from thermos.testing.wait import wait_until  # noqa: F401 - the tests import it from here

RESOURCES = Resources(cpu=0.1, ram=16 * 1024 * 1024, disk=16 * 1024 * 1024)


def make_task(name, cmdline, **kw):
    return Task(name=name, resources=RESOURCES,
                processes=[Process(name=kw.pop("process", "main"), cmdline=cmdline, min_duration=0, **kw)])




def running_run(harness, process="main"):
    return harness.wait_for_running(process, timeout=30)


class Root:
    """One checkpoint root holding finished, failed and live tasks, run by real runners."""

    def __init__(self, base):
        self.base = str(base)
        self.root = os.path.join(self.base, "checkpoints")
        self.runners: list[subprocess.Popen] = []
        self.harness = {}

    def run(self, task_id, task):
        harness = self.harness[task_id] = RunnerHarness(task, root=self.base, task_id=task_id)
        result = harness.run(timeout=60)
        assert result.returncode == 0, result.stderr
        return result

    def start(self, task_id, task):
        harness = self.harness[task_id] = RunnerHarness(task, root=self.base, task_id=task_id)
        self.runners.append(harness.start())
        return running_run(harness)

    def ckpt(self, task_id):
        return os.path.join(self.root, "checkpoints", task_id, "runner")

    def close(self):
        """Kill every runner and everything below it (coordinators run in their own groups)."""
        for runner in self.runners:
            try:
                tree = psutil.Process(runner.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                tree = []
            for proc in [runner] + tree:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            runner.communicate(timeout=30)


def build(base) -> Root:
    """The shared root: hello_ok (SUCCESS), hello_fail (FAILED) and hello_active (RUNNING)."""
    root = Root(base)
    try:
        root.run("hello_ok", make_task("hello_ok", "echo hello world; echo line2", process="hello"))
        root.run("hello_fail", make_task("hello_fail", "echo oops >&2; exit 3", max_failures=1))
        root.active_run = root.start("hello_active",
                                     make_task("hello_active", "echo started; exec sleep 300"))
    except BaseException:
        root.close()
        raise
    return root
