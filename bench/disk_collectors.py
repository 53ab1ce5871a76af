"""Observer CPU to know a deep sandbox's disk usage: DuDiskCollector vs MesosDiskCollector.

Builds a deep tree (an unpacked-JDK / node_modules-like sandbox: nested directories of small
files) and measures the CPU this process spends per collection, each beside a baseline from the
same run:
  DuDiskCollector       `du` in a background thread     baseline: a bare recursive os.scandir walk
  DiskCollector         the incremental walker (resumable steps; the shared sampler's default)
  MesosDiskCollector    one GET of the agent's /containers and a JMESPath selection
                        baseline: the same GET with urllib + json.loads, nothing else
The /containers stand-in runs in a child process, so its CPU is not counted. Finally the cost of
one minute of collection for --tasks such sandboxes (the default 60 s interval) as a share of one
core: `du` per task, versus the agent asked per task (Aurora) or once per sweep (collectors
sampled together share one request).

Usage: python bench/disk_collectors.py [--dirs N] [--files N] [--tasks N] [--containers N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from thermos.monitoring.disk import (  # noqa: E402
    DEFAULT_INTERVAL,
    DiskCollector,
    DiskCollectorSettings,
    DuDiskCollector,
    MesosDiskCollector,
)

AGENT = """
import json, sys
sys.path.insert(0, %r)
from tests.monitoring.containers_agent import ContainersAgent, container
agent = ContainersAgent()
agent.answer([container("thermos-task-%%04d" %% i, 1000 + i) for i in range(%d)])
print(agent.url(), flush=True)
sys.stdin.read()
print(len(agent.requests), flush=True)
agent.close()
"""


def build_tree(root: str, dirs: int, files: int) -> int:
    """`dirs` directories nested up to 8 deep, `files` 1 KiB files each; returns the file count."""
    made = 0
    for d in range(dirs):
        path = os.path.join(root, *("d%d" % ((d >> (3 * level)) & 7) for level in range(8)))
        os.makedirs(path, exist_ok=True)
        for f in range(files):
            with open(os.path.join(path, "f%d" % f), "wb") as fp:
                fp.write(b"x" * 1024)
            made += 1
    return made


def scandir_walk(root: str) -> int:
    total, stack = 0, [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total


def cpu(fn, runs: int) -> tuple[float, object]:
    """Median CPU seconds of this process (all threads) per call, and the last result."""
    times, result = [], None
    for _ in range(runs):
        started = time.process_time()
        result = fn()
        times.append(time.process_time() - started)
    times.sort()
    return times[len(times) // 2], result


def sampled(collector):
    def run() -> int:
        collector.sample()
        if not collector.completed_event.wait(120):
            raise SystemExit("collection did not finish within 120 s")
        return collector.value
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dirs", type=int, default=2000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="thermos-bench-disk-") as tmp:
        sandbox = os.path.join(tmp, "executors", "thermos-task-0042", "runs", "latest", "sandbox")
        count = build_tree(sandbox, opts.dirs, opts.files)
        agent = subprocess.Popen([sys.executable, "-c", AGENT % (os.path.dirname(HERE), opts.containers)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            url = agent.stdout.readline().strip()
            if not url:
                raise SystemExit("the /containers stand-in did not start")
            settings = DiskCollectorSettings(http_api_url=url)
            walk_cpu, walked = cpu(lambda: scandir_walk(sandbox), opts.runs)
            du_cpu, du_value = cpu(sampled(DuDiskCollector(sandbox)), opts.runs)
            step_cpu, step_value = cpu(DiskCollector(sandbox).collect, opts.runs)

            def bare_get() -> int:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as r:
                    return len(json.loads(r.read()))
            get_cpu, _ = cpu(bare_get, opts.runs * 4)
            mesos_cpu, mesos_value = cpu(sampled(MesosDiskCollector(sandbox, settings)), opts.runs * 4)
            if mesos_value != 1042 or not walked or du_value != step_value:
                raise SystemExit("collectors disagree: du %r, walker %r, mesos %r" % (
                    du_value, step_value, mesos_value))

            # One collection round for --tasks tasks, collectors sampled together (the shared sampler).
            collectors = [MesosDiskCollector(sandbox.replace("0042", "%04d" % i), settings)
                          for i in range(opts.tasks)]

            def round_together() -> list[int]:
                for collector in collectors:
                    collector.sample()
                for collector in collectors:
                    collector.completed_event.wait(30)
                return [collector.value for collector in collectors]
            together_cpu, values = cpu(round_together, opts.runs)
            if values != [1000 + i for i in range(opts.tasks)]:
                raise SystemExit("shared-request round gave wrong values")
        finally:
            agent.stdin.close()
            served = agent.stdout.readline().strip()
            agent.wait(10)
        gets_per_round = (int(served) - 2 * 4 * opts.runs) / opts.runs

    print("one collection of a %d-file, 8-deep sandbox (%.1f MB allocated); CPU of this process, median of %d"
          % (count, du_value / 1e6, opts.runs))
    rows = [("os.scandir walk (baseline)", walk_cpu), ("DuDiskCollector", du_cpu),
            ("DiskCollector (incremental)", step_cpu),
            ("urllib GET + json.loads (baseline)", get_cpu), ("MesosDiskCollector", mesos_cpu)]
    for name, seconds in rows:
        print("  %-36s %9.3f ms" % (name, seconds * 1e3))
    print("  (the agent's answer lists %d containers)" % opts.containers)
    share = 100.0 / DEFAULT_INTERVAL
    print("%d such tasks, one collection each per %.0f s, as a share of one core:" % (
        opts.tasks, DEFAULT_INTERVAL))
    print("  %-36s %9.2f %%" % ("du per task (Aurora's default)", du_cpu * opts.tasks * share))
    print("  %-36s %9.2f %%" % ("agent asked per task (Aurora)", mesos_cpu * opts.tasks * share))
    print("  %-36s %9.2f %%   (%.1f GETs per round of %d collectors)" % (
        "collectors sampled together", together_cpu * share, gets_per_round, opts.tasks))


if __name__ == "__main__":
    main()
