"""Runner benchmarks, each beside a baseline measured in the same run.

1. Launch latency: from runner.run() to the process's RUNNING record (start_time), p50/p99,
   beside a raw os.posix_spawn of `bash -c true` (spawn + wait). Also the whole thermos_runner
   command (interpreter start and imports included) for honesty.
2. A 100-process ordered chain of `true`, beside the same 100 commands run in one bash.
3. Runner RSS and per-coordinator PSS with 20 running processes, and runner CPU while they sleep.

Usage: python bench/runner.py [--samples N] [--idle SECONDS]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from thermos.common.ckpt import CheckpointDispatcher
from thermos.config.schema import Constraint, Process, Resources, Task
from thermos.core.runner import TaskRunner
from thermos.testing.runner import RunnerHarness

RES = Resources(cpu=0.1, ram=1 << 24, disk=1 << 24)


def pct(xs: list[float], q: int) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def running_start(root: str, task_id: str, process: str) -> float:
    state = CheckpointDispatcher.from_file(os.path.join(root, "checkpoints", task_id, "runner"))
    assert state is not None
    return state.processes[process][0].start_time


def launch_latency(samples: int) -> tuple[list[float], list[float], list[float]]:
    ours, raw, whole = [], [], []
    task = Task(name="t", processes=[Process(name="p", cmdline="true")], resources=RES)
    with tempfile.TemporaryDirectory() as tmp:
        TaskRunner(task, os.path.join(tmp, "warm"), os.path.join(tmp, "warm", "sb"), task_id="warm").run()
        for i in range(samples):
            root = os.path.join(tmp, "r%d" % i)
            runner = TaskRunner(task, root, os.path.join(root, "sandbox"), task_id="t%d" % i)
            t0 = time.time()
            runner.run()
            ours.append(running_start(root, "t%d" % i, "p") - t0)

            t0 = time.perf_counter()
            pid = os.posix_spawn("/bin/bash", ["bash", "-c", "true"], {})
            os.waitpid(pid, 0)
            raw.append(time.perf_counter() - t0)
        for i in range(max(5, samples // 10)):
            harness = RunnerHarness(task, root=os.path.join(tmp, "w%d" % i), task_id="w")
            t0 = time.time()
            result = harness.run()
            assert result.returncode == 0, result.stderr
            whole.append(result.reconstructed_state.processes["p"][0].start_time - t0)
    return ours, raw, whole


def chain(n: int) -> tuple[float, float]:
    names = ["p%03d" % i for i in range(n)]
    task = Task(name="chain", processes=[Process(name=x, cmdline="true", min_duration=0) for x in names],
                constraints=[Constraint(order=names)], resources=RES)
    with tempfile.TemporaryDirectory() as tmp:
        runner = TaskRunner(task, tmp, os.path.join(tmp, "sandbox"), task_id="chain")
        t0 = time.perf_counter()
        runner.run()
        ours = time.perf_counter() - t0
        assert all(runs[-1].state == 3 for runs in runner.state.processes.values())
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", "; ".join(["bash -c true"] * n)], check=True)
    return ours, time.perf_counter() - t0


def chain_task(n: int) -> Task:
    names = ["p%03d" % i for i in range(n)]
    return Task(name="chain", processes=[Process(name=x, cmdline="true", min_duration=0) for x in names],
                constraints=[Constraint(order=names)], resources=RES)


def startup(n: int, samples: int = 5) -> tuple[float, float]:
    """Best construction -> ACTIVE record of an n-process task, beside json.loads of its JSON."""
    import json

    task = chain_task(n)
    text = json.dumps(task.get())
    ours, base = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(samples):
            root = os.path.join(tmp, "s%d" % i)
            t0 = time.time()
            runner = TaskRunner(task, root, os.path.join(root, "sandbox"), task_id="s")
            with runner.control():
                pass  # taking control writes the header and the ACTIVE record
            state = CheckpointDispatcher.from_file(os.path.join(root, "checkpoints", "s", "runner"))
            ours.append(state.statuses[0].timestamp_ms / 1000.0 - t0)
            t0 = time.perf_counter()
            json.loads(text)
            base.append(time.perf_counter() - t0)
    return min(ours), min(base)


def whole_chain(n: int) -> tuple[float, float]:
    """thermos_runner on an n-process chain, spawn to exit, beside `python -c pass` spawn to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        harness = RunnerHarness(chain_task(n), root=tmp, task_id="chain")
        t0 = time.perf_counter()
        result = harness.run()
        ours = time.perf_counter() - t0
        assert result.returncode == 0 and result.task_state == 1, result.stderr
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return ours, time.perf_counter() - t0


def pss_kb(pid: int) -> int:
    with open("/proc/%d/smaps_rollup" % pid) as fp:
        for line in fp:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def footprint(n: int, idle: float) -> dict[str, float]:
    procs = [Process(name="s%02d" % i, cmdline="exec sleep %d" % int(idle + 30)) for i in range(n)]
    task = Task(name="idle", processes=procs, resources=RES)
    with tempfile.TemporaryDirectory() as tmp:
        harness = RunnerHarness(task, root=tmp, task_id="idle")
        proc = harness.start()
        harness.wait_for(lambda s: sum(1 for r in s.processes.values() if r[-1].state == 2) == n, timeout=60)
        state = CheckpointDispatcher.from_file(harness.runner_checkpoint)
        coordinators = [runs[-1].coordinator_pid for runs in state.processes.values()]
        runner = psutil.Process(proc.pid)
        time.sleep(2)  # let the runner settle after the last RUNNING record before measuring
        rss = runner.memory_info().rss
        runner_pss = pss_kb(proc.pid)
        coord_pss = [pss_kb(pid) for pid in coordinators]
        coord_rss = [psutil.Process(pid).memory_info().rss for pid in coordinators]
        before = runner.cpu_times()
        t0 = time.monotonic()
        time.sleep(idle)  # measuring idle CPU over a fixed window is the point here
        after = runner.cpu_times()
        wall = time.monotonic() - t0
        cpu = max(0.0, after.user + after.system - before.user - before.system) / wall
        os.kill(proc.pid, 10)  # SIGUSR1: kill the task
        proc.wait(timeout=120)
    return {"runner_rss_mb": rss / 1e6, "runner_pss_mb": runner_pss / 1e3,
            "coord_pss_mb": statistics.mean(coord_pss) / 1e3,
            "coord_rss_mb": statistics.mean(coord_rss) / 1e6, "cpu_pct": cpu * 100}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--skip-footprint", action="store_true")
    args = parser.parse_args()
    ours, raw, whole = launch_latency(args.samples)
    ms = 1000
    print("launch latency over %d launches (ms):" % len(ours))
    print("  %-46s p50 %7.2f  p99 %7.2f" % ("TaskRunner.run() -> RUNNING record", pct(ours, 50) * ms,
                                            pct(ours, 99) * ms))
    print("  %-46s p50 %7.2f  p99 %7.2f" % ("baseline: posix_spawn(bash -c true) + wait",
                                            pct(raw, 50) * ms, pct(raw, 99) * ms))
    print("  %-46s p50 %7.2f  p99 %7.2f  (interpreter start + imports included)" % (
        "thermos_runner command -> RUNNING record", pct(whole, 50) * ms, pct(whole, 99) * ms))
    print("  goal <= 20 ms p50: %s" % ("met" if pct(ours, 50) <= 0.020 else "MISSED"))
    ours_chain, raw_chain = chain(100)
    print("100-process ordered chain of `true`:")
    print("  %-46s %7.3f s (%.1f ms/process)" % ("TaskRunner", ours_chain, ours_chain * 10))
    print("  %-46s %7.3f s" % ("baseline: 100 x `bash -c true` in one bash", raw_chain))
    print("  goal <= 1 s: %s" % ("met" if ours_chain <= 1.0 else "MISSED"))
    whole, interp = whole_chain(100)
    print("  %-46s %7.3f s" % ("thermos_runner, spawn -> exit", whole))
    print("  %-46s %7.3f s" % ("baseline: python -c pass, spawn -> exit", interp))
    print("  goal <= 0.7 s: %s" % ("met" if whole <= 0.7 else "MISSED"))
    ours_start, json_start = startup(100)
    print("start-up at 100 processes:")
    print("  %-46s %7.1f ms" % ("TaskRunner() -> ACTIVE record (best of 5)", ours_start * 1000))
    print("  %-46s %7.2f ms" % ("baseline: json.loads of the task JSON", json_start * 1000))
    print("  goal <= 30 ms: %s" % ("met" if ours_start <= 0.030 else "MISSED"))
    if not args.skip_footprint:
        f = footprint(20, args.idle)
        print("20 running processes (runner is thermos_runner):")
        print("  runner RSS %.1f MB (PSS %.1f MB); goal <= 30 MB" % (f["runner_rss_mb"], f["runner_pss_mb"]))
        print("  coordinator PSS %.2f MB each (RSS %.1f MB); goal <= 3 MB" % (
            f["coord_pss_mb"], f["coord_rss_mb"]))
        print("  runner CPU while idle for %.0f s: %.3f %% of a core; goal <= 0.5 %%" % (
            args.idle, f["cpu_pct"]))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
