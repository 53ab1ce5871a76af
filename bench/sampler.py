"""CPU cost of sampling 100 live tasks at the sampler's default interval, beside a bare psutil loop.

Starts N tasks, each a real process tree (bash with a sleeping child) recorded RUNNING in a
synthetic runner checkpoint, then measures the CPU time of one sampling sweep:
  bare psutil loop   for each task pid: Process(pid).children(recursive=True) and, for every process,
                     cpu_times + memory_info + num_threads (what a thread-per-task design does)
  ResourceSampler    one sweep over all tasks: checkpoint refresh, one /proc scan, per-tree sums,
                     sandbox disk walks within their budget
Each is reported as CPU per sweep and as the share of one core at the default interval (20 s).
Goal: <= 5 % of a core.

Usage: python bench/sampler.py [--tasks N] [--sweeps N]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt, TaskState  # noqa: E402
from thermos.monitoring.monitor import TaskMonitor  # noqa: E402
from thermos.monitoring.resource import ProcessTable, ResourceSampler  # noqa: E402
from thermos.testing import ckpt as synth  # noqa: E402


def start_tasks(root: str, count: int) -> tuple[list[subprocess.Popen], dict[str, TaskMonitor]]:
    procs, monitors = [], {}
    for i in range(count):
        proc = subprocess.Popen(["bash", "-c", "sleep 600 & wait"], start_new_session=True)
        procs.append(proc)
        task_id = "live_%03d" % i
        sandbox = os.path.join(root, "sandboxes", task_id)
        os.makedirs(sandbox)
        with open(os.path.join(sandbox, "data"), "wb") as fp:
            fp.write(b"x" * 65536)
        run = synth.process_run("main", first_seq=0, pid=proc.pid)
        run[2] = RunnerCkpt(process_status=ProcessStatus(
            seq=2, process="main", state=ProcessState.RUNNING, start_time=time.time(), pid=proc.pid))
        records = [synth.task_status(TaskState.ACTIVE), synth.header(task_id=task_id, sandbox=sandbox)]
        synth.write_stream(os.path.join(root, "checkpoints", task_id, "runner"), records + run[:3])
        monitors[task_id] = TaskMonitor(root, task_id)
    deadline = time.monotonic() + 30
    table = ProcessTable.snapshot()
    while any(len(table.tree(p.pid)) < 2 for p in procs):  # every bash has forked its sleep
        if time.monotonic() > deadline:
            raise SystemExit("tasks did not start within 30 s")
        time.sleep(0.05)
        table = ProcessTable.snapshot()
    return procs, monitors


def bare_psutil(pids: list[int]) -> int:
    sampled = 0
    for pid in pids:
        try:
            parent = psutil.Process(pid)
            for proc in [parent] + parent.children(recursive=True):
                proc.cpu_times()
                proc.memory_info()
                proc.num_threads()
                sampled += 1
        except psutil.Error:
            continue
    return sampled


def cpu_per_call(fn, calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--sweeps", type=int, default=10)
    opts = parser.parse_args()
    interval = ResourceSampler.DEFAULT_INTERVAL
    with tempfile.TemporaryDirectory(prefix="thermos-bench-sampler-") as root:
        procs, monitors = start_tasks(root, opts.tasks)
        try:
            pids = [p.pid for p in procs]
            sampler = ResourceSampler()
            for task_id, monitor in monitors.items():
                sampler.add_task(task_id, monitor)
            sampler.sweep()  # first sweep: disk walks start, monitors read their checkpoints
            results = [("bare psutil loop (baseline)", cpu_per_call(lambda: bare_psutil(pids), opts.sweeps)),
                       ("ResourceSampler sweep", cpu_per_call(sampler.sweep, opts.sweeps))]
            procs_seen = sum(sampler.sample(t)[1].num_procs for t in monitors)
            print("sampling %d live tasks (%d processes in their trees, %d on the host), %d sweeps" % (
                opts.tasks, procs_seen, len(psutil.pids()), opts.sweeps))
            for name, cpu in results:
                print("  %-30s %7.2f ms CPU/sweep  = %6.3f %% of a core at the %.0f s default interval" % (
                    name, cpu * 1e3, cpu / interval * 100, interval))
            print("  goal: <= 5 % of a core")
        finally:
            for proc in procs:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for proc in procs:
                proc.wait(10)


if __name__ == "__main__":
    main()
