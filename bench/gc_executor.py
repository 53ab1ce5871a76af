"""The GC executor's pass over 10,000 finished tasks in a synthetic Mesos work_dir, beside its baselines.

Prints:
  decide       scan every run (sentinel, task records, checkpoint stat, /proc/locks) + decide,
               beside a bare listing (MesosPathDetector + scandir + stat of each runner checkpoint)
  delete       collect every task through safe_delete (from descriptors, no symlink followed),
               beside one `rm -rf` of the same trees (a copy built identically) in the same run
  gc_executor  peak RSS of a real gc_executor started by the stand-in agent that reconciles and
               deletes all the tasks, beside the peak RSS of the driver-only echo executor
Goals: decide <= 2 s for 10,000 tasks; gc_executor <= 30 MB RSS.

Usage: python bench/gc_executor.py [--tasks N] [--repeat N]
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
import uuid

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from thermos.gc.decide import GcPolicy, decide  # noqa: E402
from thermos.gc.detect import HostScanner  # noqa: E402
from thermos.gc.executor import encode_retained  # noqa: E402
from thermos.gc.reclaim import collect_task  # noqa: E402

from thermos.monitoring.detector import MesosPathDetector, TaskDetector  # noqa: E402
from thermos.testing import ckpt as synth  # noqa: E402

ECHO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "harness",
                    "echo_executor.py")


def build(work_dir: str, tasks: int, agent_id: str, framework_id: str) -> list[list[str]]:
    """One executor run per finished task, laid out as the Aurora executor does; returns each task's trees."""
    now = time.time()
    trees = []
    for i in range(tasks):
        task_id = "task_%05d" % i
        rel = ("slaves", agent_id, "frameworks", framework_id, "executors", "thermos-" + task_id, "runs",
               str(uuid.UUID(int=i)))
        run = os.path.join(work_dir, *rel)
        root = os.path.join(run, "checkpoints")
        sandbox = os.path.join(run, "sandbox")
        log_dir = os.path.join(sandbox, ".logs", "process_0", "0")
        os.makedirs(log_dir)
        os.makedirs(os.path.join(root, "tasks", "finished"))
        with open(os.path.join(sandbox, "data"), "wb") as fp:
            fp.write(b"x" * 4096)
        with open(os.path.join(log_dir, "stdout"), "wb") as fp:
            fp.write(b"log line\n" * 100)
        runner = os.path.join(root, "checkpoints", task_id, "runner")
        synth.write_stream(runner, synth.runner_stream(processes=1, runs=1, task_id=task_id, sandbox=sandbox))
        with open(os.path.join(root, "tasks", "finished", task_id), "w") as fp:
            json.dump({"name": task_id}, fp)
        mtime = now - 3600 - (i * 30 * 86400.0 / tasks)
        os.utime(runner, (mtime, mtime))
        meta = os.path.join(work_dir, "meta", *rel)
        os.makedirs(meta)
        open(os.path.join(meta, "executor.sentinel"), "w").close()
        trees.append([sandbox, os.path.dirname(runner), os.path.join(root, "tasks", "finished", task_id)])
    return trees


def timed(fn, repeat: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def peak_rss_kb(pid: int) -> int:
    with open("/proc/%d/status" % pid) as fp:
        for line in fp:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def executor_peak(agent, executor_id: str, command: str, task: dict | None, done) -> int:
    """Start an executor, let it work until `done()`, read its peak RSS, then shut it down."""
    run = agent.launch_executor(executor_id, command)
    agent.wait_for(lambda: run.subscribed, timeout=60, what="%s to subscribe" % executor_id)
    if task is not None:
        agent.launch_task(executor_id, task)
    agent.wait_for(done, timeout=600, what="%s to finish its work" % executor_id)
    shell = psutil.Process(run.proc.pid)  # `sh -c` may or may not exec the command
    python = next((p for p in [shell, *shell.children()] if "python" in p.name()), shell)
    peak = peak_rss_kb(python.pid)
    agent.shutdown(executor_id)
    agent.wait_exit(executor_id, timeout=60)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    agent_id, framework_id = "%s-S0" % uuid.uuid4(), "%s-0000" % uuid.uuid4()
    with tempfile.TemporaryDirectory(prefix="thermos-bench-gcx-") as tmp:
        work_a, work_b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        started = time.perf_counter()
        build(work_a, opts.tasks, agent_id, framework_id)
        trees_b = build(work_b, opts.tasks, agent_id, framework_id)
        print("built 2 x %d finished tasks in %.1f s" % (opts.tasks, time.perf_counter() - started))

        def listing() -> int:
            count = 0
            for root in MesosPathDetector(work_a).get_paths():
                tasks = TaskDetector(root)
                count += sum(1 for _, task_id in tasks.get_task_ids(state="finished")
                             if os.stat(tasks.get_checkpoint(task_id)).st_mtime)
            return count

        scanner = HostScanner(MesosPathDetector(work_a))

        def scan_and_decide():
            return decide(scanner.scan(), {}, GcPolicy(), time.time())

        print("GC pass over %d finished tasks (median of %d)" % (opts.tasks, opts.repeat))
        base, listed = timed(listing, opts.repeat)
        print("  %-36s %8.0f ms  (%d tasks)" % ("listing + stat (baseline)", base * 1e3, listed))
        took, plan = timed(scan_and_decide, opts.repeat)
        print("  %-36s %8.0f ms  (%d to delete)   goal <= 2000 ms" % ("scan + decide", took * 1e3,
                                                                      len(plan.delete)))

        # Interleaved in chunks, so that both see the same disk (the host's I/O load varies).
        os.sync()
        ours = rm = 0.0
        freed = 0
        chunk = 250
        for start in range(0, len(plan.delete), chunk):
            began = time.perf_counter()
            for outcome in (collect_task(task) for task in plan.delete[start:start + chunk]):
                freed += outcome.freed.bytes if outcome.freed is not None else 0
            ours += time.perf_counter() - began
            paths = [path for trees in trees_b[start:start + chunk] for path in trees]
            began = time.perf_counter()
            subprocess.run(["xargs", "-0", "rm", "-rf", "--"], input="\0".join(paths).encode(), check=True)
            rm += time.perf_counter() - began
        print("  %-36s %8.0f ms  (%.0f tasks/s, %.1f MiB freed)" % (
            "delete via safe_delete", ours * 1e3, len(plan.delete) / ours, freed / 2**20))
        print("  %-36s %8.0f ms  (%.0f tasks/s)" % ("rm -rf of the same trees (baseline)", rm * 1e3,
                                                   opts.tasks / rm))

        from thermos.testing.mesos_agent import MesosAgent

        work_c = os.path.join(tmp, "c")
        agent = MesosAgent(work_c)
        agent.start()
        try:
            build(work_c, opts.tasks, agent.agent_id, agent.framework_id)
            echo = executor_peak(agent, "echo", shlex.join([sys.executable, ECHO]), None, lambda: True)
            gc_id = "system-gc-%s" % uuid.uuid4()
            empty = os.path.join(tmp, "none")
            os.makedirs(empty)
            command = shlex.join([sys.executable, "-m", "thermos.gc.executor", "--root", empty])
            started = time.perf_counter()
            task = agent.task_info(gc_id, encode_retained({}), executor_id="aurora.gc")
            gc_peak = executor_peak(agent, "aurora.gc", command, task, lambda: agent.task_updates(gc_id))
            elapsed = time.perf_counter() - started
            left = sum(1 for root in MesosPathDetector(work_c).get_paths()
                       for _ in TaskDetector(root).get_task_ids())
        finally:
            agent.stop()
        print("  %-36s %8.1f MB peak RSS (GC of %d tasks end to end in %.1f s, %d left)   goal <= 30 MB" % (
            "gc_executor", gc_peak / 1024, opts.tasks, elapsed, left))
        print("  %-36s %8.1f MB peak RSS" % ("driver-only echo executor (baseline)", echo / 1024))


if __name__ == "__main__":
    main()
