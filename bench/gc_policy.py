"""GC policy selection over 10,000 finished tasks, beside a bare listing of the same tasks.

Prints, each as the median of several runs:
  listing + stat       list tasks/finished and stat every runner checkpoint (the floor)
  age + count policy   GarbageCollectionPolicy(max_age, max_tasks): no sizes needed
  space policy         GarbageCollectionPolicy(max_space): reads each header, measures data/logs/metadata
Goal: <= 2 s for 10,000 tasks.

Usage: python bench/gc_policy.py [--tasks N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from thermos.monitoring.detector import FixedPathDetector, TaskDetector  # noqa: E402
from thermos.monitoring.garbage import GarbageCollectionPolicy  # noqa: E402
from thermos.testing import ckpt as synth  # noqa: E402


def build_root(root: str, tasks: int) -> None:
    """Finished tasks with a sandbox holding one data file and a stdout log, ages spread over 30 days."""
    os.makedirs(os.path.join(root, "tasks", "finished"))
    now = time.time()
    for i in range(tasks):
        task_id = "task_%05d" % i
        sandbox = os.path.join(root, "sandboxes", task_id)
        log_dir = os.path.join(sandbox, ".logs", "process_0", "0")
        os.makedirs(log_dir)
        with open(os.path.join(sandbox, "data"), "wb") as fp:
            fp.write(b"x" * 4096)
        with open(os.path.join(log_dir, "stdout"), "wb") as fp:
            fp.write(b"log line\n" * 100)
        runner = os.path.join(root, "checkpoints", task_id, "runner")
        synth.write_stream(runner, synth.runner_stream(processes=1, runs=1, task_id=task_id, sandbox=sandbox))
        with open(os.path.join(root, "tasks", "finished", task_id), "w") as fp:
            json.dump({"name": task_id}, fp)
        mtime = now - (i * 30 * 86400.0 / tasks)
        os.utime(runner, (mtime, mtime))


def timed(fn, repeat: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="thermos-bench-gc-") as root:
        build_root(root, opts.tasks)
        detector = FixedPathDetector(root)

        def listing() -> int:
            tasks = TaskDetector(root)
            return sum(1 for _, task_id in tasks.get_task_ids(state="finished")
                       if os.stat(tasks.get_checkpoint(task_id)).st_mtime)

        def age_count() -> int:
            return len(GarbageCollectionPolicy(detector, max_age=15 * 86400, max_tasks=2000).run())

        def space() -> int:
            return len(GarbageCollectionPolicy(detector, max_space=100 << 20).run())

        print("GC policy selection over %d finished tasks (median of %d)" % (opts.tasks, opts.repeat))
        for name, fn in (("listing + stat (baseline)", listing), ("age + count policy", age_count),
                         ("space policy (measures sizes)", space)):
            seconds, selected = timed(fn, opts.repeat)
            print("  %-32s %8.1f ms  (%d selected)" % (name, seconds * 1e3, selected))
        print("  goal: <= 2000 ms")


if __name__ == "__main__":
    main()
