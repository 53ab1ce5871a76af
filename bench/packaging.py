"""Start-up of the pex files beside the virtualenv's commands and a bare interpreter.

Prints:
  cold start    `/usr/bin/python3 -I <command>.pex --help` to exit: the first run on an empty
                PEX_ROOT (it unpacks the file's virtualenv) and then warm (median), beside
                `python3 -c pass` and the virtualenv's console script, same run
  launch        LAUNCH -> TASK_RUNNING through the stand-in Mesos agent (executor start, subscribe,
                runner start, task recorded) with the pex executor beside the venv executor
Goal: launch with the pex within 1.5x of the venv executor.

Usage: python bench/packaging.py [--repeat N]   (builds the pex files first if the sources changed)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from thermos.executor.task_info import encode_assigned_task  # noqa: E402

from thermos.gen.aurora.ttypes import (  # noqa: E402
    AssignedTask,
    ExecutorConfig,
    Identity,
    JobKey,
    Resource,
    TaskConfig,
)
from thermos.testing.mesos_agent import MesosAgent  # noqa: E402

PY = "/usr/bin/python3"
COMMANDS = ("thermos_executor", "thermos_runner", "gc_executor", "thermos_observer", "thermos")
VENV_BIN = os.path.dirname(sys.executable)


def build(out: str) -> None:
    subprocess.run([sys.executable, os.path.join(HERE, "packaging", "build.py"), "--no-report", "--out", out],
                   check=True, stdout=subprocess.DEVNULL)


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def median(argv: list[str], env: dict[str, str], repeat: int) -> float:
    return statistics.median(timed(argv, env) for _ in range(repeat))


def task_data(task_id: str) -> bytes:
    job = {"name": "bench", "role": "www-data", "environment": "prod", "cluster": "bench",
           "task": {"name": "bench", "processes": [{"name": "main", "cmdline": "sleep 600"}],
                    "resources": {"cpu": 0.1, "ram": 16 << 20, "disk": 16 << 20}}}
    config = TaskConfig(job=JobKey(role="www-data", environment="prod", name="bench"),
                        owner=Identity(user="www-data"), isService=True, priority=0, maxTaskFailures=1,
                        resources=frozenset({Resource(numCpus=0.1), Resource(ramMb=16), Resource(diskMb=16)}),
                        constraints=frozenset(), executorConfig=ExecutorConfig(name="AuroraExecutor",
                                                                               data=json.dumps(job)))
    return encode_assigned_task(AssignedTask(taskId=task_id, slaveId="bench", slaveHost="localhost",
                                             task=config, assignedPorts={}, instanceId=0))


def launch_to_running(agent: MesosAgent, command: str, n: int, env: dict[str, str]) -> float:
    """Seconds from starting the executor (LAUNCH queued at once) to TASK_RUNNING; the task is then killed."""
    task_id = "bench-%d" % n
    eid = "thermos-" + task_id
    started = time.perf_counter()
    agent.launch_executor(eid, command + " --nosetuid", env=env)
    agent.launch_task(eid, agent.task_info(task_id, task_data(task_id), executor_id=eid))
    agent.wait_for(lambda: "TASK_RUNNING" in agent.states(task_id) or agent.task_state(task_id).endswith(
        ("FAILED", "LOST")), 120, "TASK_RUNNING")
    took = time.perf_counter() - started
    if agent.task_state(task_id) != "TASK_RUNNING":
        raise SystemExit("bench: %s did not reach TASK_RUNNING: %s" % (command, agent.task_updates(task_id)))
    agent.kill(task_id)
    agent.wait_terminal(task_id, 120)
    agent.wait_exit(eid, 120)
    return took


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    opts = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-packaging-") as work:
        dist = os.path.join(work, "dist")
        build(dist)
        pex_root = os.path.join(work, "pex-root")
        env = {"PATH": "/usr/bin:/bin", "PEX_ROOT": pex_root, "HOME": pex_root}
        base = median([PY, "-c", "pass"], env, opts.repeat)
        print("cold start, --help to exit (median of %d; first = first run on an empty PEX_ROOT)"
              % opts.repeat)
        print("  %-20s %8.0f ms  (baseline, same run)" % ("python3 -c pass", base * 1e3))
        for command in COMMANDS:
            argv = [PY, "-I", os.path.join(dist, command + ".pex"), "--help"]
            first = timed(argv, env)
            warm = median(argv, env, opts.repeat)
            venv = median([os.path.join(VENV_BIN, command), "--help"], dict(os.environ), opts.repeat)
            print("  %-20s %8.0f ms warm, %5.0f ms first  (venv console script %4.0f ms; "
                  "%.1fx python3 -c pass)"
                  % (command + ".pex", warm * 1e3, first * 1e3, venv * 1e3, warm / base))

        agent = MesosAgent(os.path.join(work, "mesos"))
        agent.start()
        try:
            pex_cmd = "%s -I %s" % (PY, shlex.quote(os.path.join(dist, "thermos_executor.pex")))
            venv_cmd = shlex.quote(os.path.join(VENV_BIN, "thermos_executor"))
            runs: dict[str, list[float]] = {"pex": [], "venv": []}
            for n in range(opts.repeat):  # interleaved, so load changes hit both alike
                runs["pex"].append(launch_to_running(agent, pex_cmd, 2 * n, {"PEX_ROOT": pex_root}))
                runs["venv"].append(launch_to_running(agent, venv_cmd, 2 * n + 1, {}))
        finally:
            agent.stop()
        pex, venv = statistics.median(runs["pex"]), statistics.median(runs["venv"])
        print("LAUNCH -> TASK_RUNNING through the stand-in agent (median of %d)" % opts.repeat)
        print("  %-20s %8.0f ms  (baseline, same run)" % ("venv executor", venv * 1e3))
        print("  %-20s %8.0f ms  %.2fx   goal <= 1.5x" % ("pex executor", pex * 1e3, pex / venv))


if __name__ == "__main__":
    main()
