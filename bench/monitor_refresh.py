"""Detector + TaskMonitor refresh over 100 active + 2000 finished tasks, beside raw reads.

Prints, each as the median of several runs in this process:
  raw read        list the tasks and read every runner checkpoint's bytes (the floor)
  aurora replay   CheckpointDispatcher.from_file for every task (what Aurora's tools did)
  cold refresh    TaskDetector + a new TaskMonitor per task + a full replay of each
  warm refresh    TaskDetector + refresh of every existing monitor (an observer's steady state)
  thermos status -v   wall time of the real command on the same root (a fresh process)
Goal: a full refresh <= 100 ms (Aurora: 480 ms at 55 + 2004 tasks).

Usage: python bench/monitor_refresh.py [--active N] [--finished N] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from thermos.common.ckpt import CheckpointDispatcher  # noqa: E402
from thermos.monitoring.detector import TaskDetector  # noqa: E402
from thermos.monitoring.monitor import TaskMonitor  # noqa: E402
from thermos.testing import ckpt as synth  # noqa: E402


def build_root(root: str, active: int, finished: int, processes: int = 3, runs: int = 2) -> None:
    """Synthetic runner checkpoints and task records, as a runner leaves them."""
    for state, count in (("active", active), ("finished", finished)):
        os.makedirs(os.path.join(root, "tasks", state), exist_ok=True)
        for i in range(count):
            task_id = "%s_task_%05d" % (state, i)
            synth.write_stream(os.path.join(root, "checkpoints", task_id, "runner"), synth.runner_stream(
                processes=processes, runs=runs, task_id=task_id, sandbox=os.path.join(root, "sb", task_id),
                finished=state == "finished"))
            with open(os.path.join(root, "tasks", state, task_id), "w") as fp:
                fp.write('{"name": "%s"}' % task_id)


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--active", type=int, default=100)
    parser.add_argument("--finished", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="thermos-bench-") as root:
        build_root(root, opts.active, opts.finished)
        tasks = opts.active + opts.finished

        def raw() -> None:
            detector = TaskDetector(root)
            for _, task_id in detector.get_task_ids():
                with open(detector.get_checkpoint(task_id), "rb") as fp:
                    fp.read()

        def aurora() -> None:
            detector = TaskDetector(root)
            for _, task_id in detector.get_task_ids():
                CheckpointDispatcher.from_file(detector.get_checkpoint(task_id))

        monitors: dict[str, TaskMonitor] = {}

        def cold() -> None:
            monitors.clear()
            for _, task_id in TaskDetector(root).get_task_ids():
                monitor = monitors[task_id] = TaskMonitor(root, task_id)
                monitor.refresh()

        def warm() -> None:
            for _, task_id in TaskDetector(root).get_task_ids():
                monitor = monitors.get(task_id)
                if monitor is None:
                    monitor = monitors[task_id] = TaskMonitor(root, task_id)
                monitor.refresh()

        raw()  # warm the page cache for every variant alike
        figures = [("raw read (baseline)", timed(raw, opts.repeat)),
                   ("aurora replay (from_file)", timed(aurora, opts.repeat)),
                   ("cold refresh (new monitors)", timed(cold, opts.repeat)),
                   ("warm refresh (existing monitors)", timed(warm, opts.repeat))]
        status = [sys.executable, "-m", "thermos.cli.main", "--root", root, "--mesos-root", "",
                  "status", "-v"]
        bare = [sys.executable, "-c", "import thermos.cli.main"]

        def run(cmd: list[str]) -> None:
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)

        figures.append(("python + import thermos.cli (baseline)", timed(lambda: run(bare), opts.repeat)))
        figures.append(("thermos status -v", timed(lambda: run(status), opts.repeat)))

        print("monitor refresh over %d active + %d finished tasks (median of %d)" % (
            opts.active, opts.finished, opts.repeat))
        for name, seconds in figures:
            print("  %-40s %8.1f ms  (%5.1f us/task)" % (name, seconds * 1e3, seconds * 1e6 / tasks))
        print("  goal: full refresh <= 100 ms; Aurora: 480 ms at 55 + 2004 tasks")


if __name__ == "__main__":
    main()
