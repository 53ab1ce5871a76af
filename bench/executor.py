"""thermos_executor benchmarks through the stand-in Mesos agent, each beside a same-run baseline.

1. LAUNCH -> TASK_RUNNING for a task without health checks (the executor already subscribed, and
   from the executor's own start), beside thermos_runner started directly (Popen -> the process's
   RUNNING record). Goal: <= 300 ms p50.
2. RSS of executor + runner for one running task, beside thermos_runner alone. Goal: <= 40 MB.
3. KILL -> TASK_KILLED for a task that exits on SIGTERM, beside the same command's own exit on
   SIGTERM when started directly. Goal: <= 1 s beyond the task's own exit.

Every interpreter (executors, runners, baselines) reads compiled bytecode from a private cache that
the warm-up run fills, as an installed thermos does (pip compiles it; a checkout writes __pycache__
on first import). Where PYTHONDONTWRITEBYTECODE is set, as in some CI sandboxes, each process would
otherwise recompile every module from source: about 150 ms and 2 MB more per interpreter here;
`--no-bytecode-cache` measures that case.

Usage: python bench/executor.py [--samples N] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psutil
from thermos.executor.task_info import encode_assigned_task

from thermos.common.ckpt import CheckpointDispatcher
from thermos.config.schema import Process, Resources, Task
from thermos.gen.aurora.ttypes import AssignedTask, ExecutorConfig, JobKey, TaskConfig
from thermos.testing.mesos_agent import MesosAgent
from thermos.testing.runner import RunnerHarness
from thermos.testing.wait import wait_until

EXECUTOR = os.path.join(os.path.dirname(sys.executable), "thermos_executor")
SLEEPER_JOB = json.dumps({"name": "bench", "role": "root", "environment": "prod", "cluster": "local",
                          "task": {"name": "bench",
                                   "processes": [{"name": "sleeper", "cmdline": "sleep 600"}],
                                   "resources": {"cpu": 0.1, "ram": 1 << 24, "disk": 1 << 24}}})


def task_data(task_id: str) -> bytes:
    """TaskInfo.data as an Aurora scheduler sends it: an AssignedTask with MesosJob JSON."""
    config = TaskConfig(job=JobKey(role="root", environment="prod", name="bench"),
                        executorConfig=ExecutorConfig(name="AuroraExecutor", data=SLEEPER_JOB))
    return encode_assigned_task(AssignedTask(taskId=task_id, slaveId="a", slaveHost="localhost", task=config,
                                             assignedPorts={}, instanceId=0))


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def ms(x: float) -> str:
    return "%.0f ms" % (x * 1000)


def executor_run(agent: MesosAgent, task_id: str, subscribed_first: bool) -> tuple[float, object]:
    """Seconds from LAUNCH (or from the executor's start) to TASK_RUNNING; and the executor run."""
    eid = "thermos-" + task_id
    data = task_data(task_id)
    t0 = time.monotonic()
    run = agent.launch_executor(eid, "%s --nosetuid" % shlex.quote(EXECUTOR))
    if subscribed_first:
        agent.wait_for(lambda: run.subscribes, 60, "subscribe")
        t0 = time.monotonic()
    agent.launch_task(eid, agent.task_info(task_id, data, executor_id=eid))
    agent.wait_for(lambda: "TASK_RUNNING" in agent.states(task_id), 60, "RUNNING")
    return agent.task_updates(task_id)[-1].received - t0, run


def kill_and_wait(agent: MesosAgent, task_id: str) -> float:
    t0 = time.monotonic()
    agent.kill(task_id)
    update = agent.wait_terminal(task_id, 120)
    assert update.state == "TASK_KILLED", update
    agent.wait_exit("thermos-" + task_id, 60)
    return update.received - t0


def runner_direct(tmp: str, i: int) -> tuple[float, int]:
    """thermos_runner started directly: Popen -> RUNNING record; and its RSS once running."""
    task = Task(name="t", processes=[Process(name="sleeper", cmdline="sleep 600")],
                resources=Resources(cpu=0.1, ram=1 << 24, disk=1 << 24))
    harness = RunnerHarness(task, root=os.path.join(tmp, "direct%d" % i), task_id="d%d" % i)
    t0 = time.time()
    proc = harness.start()
    try:
        def started() -> float | None:
            if not os.path.exists(harness.runner_checkpoint):
                return None
            state = CheckpointDispatcher.from_file(harness.runner_checkpoint)
            runs = state.processes.get("sleeper") if state and state.processes else None
            return runs[-1].start_time if runs and runs[-1].start_time else None

        start = wait_until(started, timeout=60)
        rss = psutil.Process(proc.pid).memory_info().rss
        return start - t0, rss
    finally:
        proc.send_signal(signal.SIGUSR1)
        proc.wait(timeout=120)


def own_exit_on_sigterm() -> float:
    proc = subprocess.Popen(["bash", "-c", "exec sleep 600"])
    wait_until(lambda: psutil.Process(proc.pid).name() == "sleep", timeout=10)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    return time.monotonic() - t0


def use_bytecode_cache(directory: str) -> None:
    """Let this process's children write and read bytecode under `directory` (see the docstring)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = directory


def rss_after_settling(pid: int) -> int:
    """RSS once the executor's background start-up (resource monitoring) has run: 1 s after RUNNING."""
    time.sleep(1.0)
    return psutil.Process(pid).memory_info().rss


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="leave PYTHONDONTWRITEBYTECODE as it is (every process compiles from source)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_bytecode_cache:
            use_bytecode_cache(os.path.join(tmp, "pycache"))
        agent = MesosAgent(os.path.join(tmp, "agent"))
        agent.start()
        try:
            executor_run(agent, "warm", True)
            kill_and_wait(agent, "warm")
            launch, cold, kills, rss_exec, rss_runner = [], [], [], [], []
            for i in range(args.samples):
                seconds, run = executor_run(agent, "l%d" % i, subscribed_first=True)
                launch.append(seconds)
                if i < 3:
                    executor = psutil.Process(run.proc.pid)  # type: ignore[attr-defined]
                    kids = [p for p in executor.children(recursive=True) if "thermos_executor" in " ".join(
                        p.cmdline())]
                    ex = kids[0] if kids else executor
                    ckpt = os.path.join(run.sandbox, "checkpoints", "checkpoints", "l%d" % i,  # type: ignore
                                        "runner")
                    state = CheckpointDispatcher.from_file(ckpt)
                    runner = psutil.Process(state.statuses[-1].runner_pid)
                    rss_exec.append(rss_after_settling(ex.pid))
                    rss_runner.append(runner.memory_info().rss)
                kills.append(kill_and_wait(agent, "l%d" % i))
            for i in range(max(3, args.samples // 2)):
                seconds, _ = executor_run(agent, "c%d" % i, subscribed_first=False)
                cold.append(seconds)
                kill_and_wait(agent, "c%d" % i)
        finally:
            agent.stop()
        direct = [runner_direct(tmp, i) for i in range(args.samples)]
    own = [own_exit_on_sigterm() for _ in range(args.samples)]
    mb = 1024 * 1024
    rss_e, rss_r = p50(rss_exec), p50(rss_runner)
    print("bytecode: %s" % ("compiled each time (PYTHONDONTWRITEBYTECODE=%s)" % os.environ.get(
        "PYTHONDONTWRITEBYTECODE", "") if args.no_bytecode_cache else "cached, as installed"))
    print("LAUNCH -> TASK_RUNNING (subscribed executor)  p50 %s  max %s" % (ms(p50(launch)), ms(max(launch))))
    print("executor start -> TASK_RUNNING               p50 %s  max %s" % (ms(p50(cold)), ms(max(cold))))
    print("  baseline: thermos_runner started directly  p50 %s  (Popen -> RUNNING record)" % ms(
        p50([d[0] for d in direct])))
    print("RSS executor + runner, one running task      %.1f MB  (executor %.1f MB, runner %.1f MB)" % (
        (rss_e + rss_r) / mb, rss_e / mb, rss_r / mb))
    print("  baseline: thermos_runner alone              %.1f MB" % (p50([d[1] for d in direct]) / mb))
    print("KILL -> TASK_KILLED (task exits on SIGTERM)  p50 %s  max %s" % (ms(p50(kills)), ms(max(kills))))
    print("  baseline: the task's own exit on SIGTERM    p50 %s" % ms(p50(own)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
