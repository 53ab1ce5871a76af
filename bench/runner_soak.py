"""Long-lived runner memory: N runs of failing processes, restarted one after the other under a
real thermos_runner, with the runner's RSS (and PSS) sampled throughout, beside same-run baselines.

The runner freezes its GC at every coordinator fork and never unfreezes it (thermos/core/process.py
`Process._fork`), so cyclic garbage that was alive at some fork is never collected. This shows
whether that makes a long-lived runner grow.

thermos_runner caps every process at 100 runs (Aurora's CappedTaskPlanner), so N runs are N/100
processes of `exit 1` with `max_failures=100`, `min_duration=0`, under `max_concurrency=1`: the
first one fails and restarts 100 times, then the next, and so on; the task ends after N runs.

Runners measured (each a real `python -m thermos.runner`):
  shipped   the code as it is (GC frozen at each fork, never unfrozen)
  unfreeze  the same, but the runner unfreezes right after each fork (the freeze only covers the
            fork itself); patched in by a bootstrap, thermos is not modified
  nofreeze  gc.freeze() made a no-op (the GC runs as in plain Python)
Baselines, same run:
  fork loop   a Python process with the runner's imports that forks N children the way the runner
              does (gc.collect(1) + gc.freeze() + fork, the child posix_spawns `bash -c 'exit 1'`)
  history     the memory the task's history needs: the Python heap (tracemalloc) and RSS a fresh
              interpreter gains by replaying the final checkpoint (every run of every process is
              kept in RunnerState, as in Aurora)

Growth per 1,000 restarts is the least-squares slope of RSS over the restart count, taken after
the first 10 % of the runs (imports, first-use caches and allocator arenas settle there).

Usage: python bench/runner_soak.py [--restarts 5000] [--variants shipped,nofreeze,unfreeze]
(defaults: 5,000 runs, shipped and nofreeze: two to three minutes on two busy cores; a runner
grows "beyond its history" when its late RSS slope exceeds the history's by more than 0.1 MB per
1,000 runs)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from thermos.common.recordio import ThriftRecordReader
from thermos.config.schema import Process, Resources, Task
from thermos.gen.thermos.ttypes import ProcessState, RunnerCkpt
from thermos.testing.runner import RunnerHarness

RES = Resources(cpu=0.1, ram=1 << 24, disk=1 << 24)
SAMPLE_INTERVAL = 0.2
MB = 1 << 20
RUNS_PER_PROCESS = 100  # CappedTaskPlanner.TOTAL_RUN_LIMIT

# Started as `python -c BOOT MODE <thermos_runner flags>`: the runner's own main(), optionally
# with the GC freeze changed, so that thermos itself stays untouched.
BOOT = r"""
import gc, sys
mode = sys.argv.pop(1)
if mode == "nofreeze":
    gc.freeze = lambda: None
elif mode == "unfreeze":
    from thermos.core.process import Process
    frozen_fork = Process._fork
    def _fork(self):
        pid = frozen_fork(self)
        if pid != 0:
            gc.unfreeze()
        return pid
    Process._fork = _fork
elif mode != "shipped":
    raise SystemExit("unknown mode %r" % mode)
from thermos.runner.main import main
sys.exit(main())
"""

# The fork-loop baseline: same imports as a runner, forks like Process._fork, reports its own RSS.
FORK_LOOP = r"""
import gc, os, sys
import thermos.core.runner  # noqa: F401 - the runner's import footprint
n, every = int(sys.argv[1]), int(sys.argv[2])
def memory():
    rss = pss = 0
    with open("/proc/self/smaps_rollup") as fp:
        for line in fp:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss
for i in range(1, n + 1):
    gc.collect(1)
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        child = os.posix_spawn("/bin/bash", ["bash", "-c", "exit 1"], {})
        os.waitpid(child, 0)
        os._exit(0)
    os.waitpid(pid, 0)
    if i == 1 or i % every == 0:
        rss, pss = memory()
        print(i, rss, pss, flush=True)
"""

# The history baseline: the Python heap the replayed history of the task holds (tracemalloc), and the
# RSS it adds, in a fresh interpreter.
STATE = r"""
import gc, sys, tracemalloc
from thermos.common.ckpt import CheckpointDispatcher
def rss():
    with open("/proc/self/status") as fp:
        for line in fp:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
CheckpointDispatcher.from_file(sys.argv[2])  # warm every code path and cache first
gc.collect()
before = rss()
tracemalloc.start()
state = CheckpointDispatcher.from_file(sys.argv[1])
gc.collect()
heap = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
print(heap, (rss() - before) * 1024, sum(len(runs) for runs in state.processes.values()))
"""


@dataclass
class Sample:
    seconds: float
    runs: int
    rss_kb: int
    pss_kb: int


@dataclass
class Soak:
    name: str
    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0
    runs: int = 0

    def figures(self, total: int) -> dict[str, float]:
        settled = [s for s in self.samples if s.runs >= max(1, total // 10)]
        start = settled[0] if settled else self.samples[0]
        end = self.samples[-1]
        peak = max(s.rss_kb for s in self.samples)
        return {"start": start.rss_kb / 1024, "peak": peak / 1024, "end": end.rss_kb / 1024,
                "start_pss": start.pss_kb / 1024, "end_pss": end.pss_kb / 1024,
                "slope": slope(settled) * 1000 / 1024,
                "slope_late": slope([s for s in settled if s.runs >= total // 2]) * 1000 / 1024,
                "rate": self.runs / self.wall if self.wall else 0.0}


def slope(samples: list[Sample]) -> float:
    """Least-squares kB of RSS per run."""
    if len(samples) < 2:
        return 0.0
    xs = [float(s.runs) for s in samples]
    ys = [float(s.rss_kb) for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def memory_kb(pid: int) -> tuple[int, int] | None:
    """(RSS, PSS) of `pid` from smaps_rollup, or None once it is gone."""
    rss = pss = 0
    try:
        with open("/proc/%d/smaps_rollup" % pid) as fp:
            for line in fp:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (rss, pss) if rss else None


class RunCounter:
    """Counts finished runs by tailing the runner checkpoint (a terminal record ends each run)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._reader: ThriftRecordReader[RunnerCkpt] | None = None
        self.runs = 0

    def poll(self) -> int:
        if self._reader is None:
            try:
                self._reader = ThriftRecordReader(open(self._path, "rb"), RunnerCkpt)  # noqa: SIM115
            except FileNotFoundError:
                return self.runs
        while (record := self._reader.try_read()) is not None:
            if record.process_status is not None and record.process_status.state in (
                    ProcessState.FAILED, ProcessState.SUCCESS, ProcessState.KILLED):
                self.runs += 1
        return self.runs

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def flapping_task(name: str, runs: int) -> Task:
    count = max(1, -(-runs // RUNS_PER_PROCESS))
    return Task(name=name, resources=RES, max_failures=0, max_concurrency=1, processes=[
        Process(name="flap%03d" % i, cmdline="exit 1", min_duration=0,
                max_failures=min(RUNS_PER_PROCESS, runs - i * RUNS_PER_PROCESS)) for i in range(count)])


def soak_runner(mode: str, restarts: int, base: str, timeout: float) -> tuple[Soak, str]:
    harness = RunnerHarness(flapping_task("soak", restarts), root=os.path.join(base, mode), task_id="soak")
    command = harness.command()
    assert command[1:3] == ["-m", "thermos.runner"], command
    counter = RunCounter(harness.runner_checkpoint)
    soak = Soak(mode)
    out_path = os.path.join(harness.root, "runner.out")
    with open(out_path, "w") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen([command[0], "-c", BOOT, mode] + command[3:], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None:
                if time.monotonic() - t0 > timeout:
                    raise SystemExit("%s runner did not finish %d runs within %.0f s" % (
                        mode, restarts, timeout))
                memory = memory_kb(proc.pid)
                runs = counter.poll()
                if memory is not None and proc.poll() is None:
                    soak.samples.append(Sample(time.monotonic() - t0, runs, *memory))
                time.sleep(SAMPLE_INTERVAL)  # a sampling period, not synchronisation
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        soak.wall = time.monotonic() - t0
    soak.runs = counter.poll()
    counter.close()
    if soak.runs != restarts or not soak.samples:
        with open(out_path) as fp:
            raise SystemExit("%s runner ended after %d of %d runs (exit %s):\n%s" % (
                mode, soak.runs, restarts, proc.returncode, fp.read()[-2000:]))
    return soak, harness.runner_checkpoint


def fork_loop(restarts: int) -> Soak:
    every = max(1, restarts // 200)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", FORK_LOOP, str(restarts), str(every)],
                         capture_output=True, text=True, check=True)
    soak = Soak("fork loop", wall=time.monotonic() - t0, runs=restarts)
    for line in out.stdout.split("\n"):
        if line.strip():
            runs, rss, pss = (int(x) for x in line.split())
            soak.samples.append(Sample(0.0, runs, rss, pss))
    return soak


def state_cost(checkpoint: str, small: str) -> tuple[float, float, int]:
    """(heap MB, RSS MB, runs) of the replayed history of `checkpoint`."""
    out = subprocess.run([sys.executable, "-c", STATE, checkpoint, small],
                         capture_output=True, text=True, check=True)
    heap, rss, runs = (int(x) for x in out.stdout.split())
    return heap / MB, rss / MB, runs


def small_checkpoint(base: str) -> str:
    harness = RunnerHarness(flapping_task("warm", 3), root=os.path.join(base, "warm"), task_id="warm")
    result = harness.run(timeout=60)
    assert result.returncode == 0, result.stderr
    return harness.runner_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=5_000, help="runs of the failing process")
    parser.add_argument("--variants", default="shipped,nofreeze",
                        help="comma-separated runner variants (shipped, unfreeze, nofreeze)")
    parser.add_argument("--timeout", type=float, default=900.0, help="bound per runner, seconds")
    args = parser.parse_args()
    n = args.restarts
    variants = [v for v in args.variants.split(",") if v]

    with tempfile.TemporaryDirectory(prefix="thermos-soak-") as base:
        results: list[Soak] = []
        checkpoint = ""
        for mode in variants:
            soak, ckpt = soak_runner(mode, n, base, args.timeout)
            results.append(soak)
            checkpoint = checkpoint or ckpt
        loop = fork_loop(n)
        heap_mb, state_rss_mb, state_runs = state_cost(checkpoint, small_checkpoint(base))

    per_k = 1000 / max(1, state_runs)
    history = heap_mb * per_k
    print("runner soak: %d runs of a failing process (%d processes x %d runs, one at a time) under "
          "thermos_runner" % (n, len(flapping_task("soak", n).processes().get()), RUNS_PER_PROCESS))
    print("  %-28s %8s %8s %8s %9s %9s %16s %8s" % (
        "", "start MB", "peak MB", "end MB", "PSS start", "PSS end", "MB/1000 runs", "runs/s"))
    for soak in results + [loop]:
        f = soak.figures(n)
        label = "baseline: fork loop" if soak is loop else "thermos_runner, %s" % soak.name
        print("  %-28s %8.1f %8.1f %8.1f %9.1f %9.1f %7.3f (%6.3f) %8.0f" % (
            label, f["start"], f["peak"], f["end"], f["start_pss"], f["end_pss"], f["slope"],
            f["slope_late"], f["rate"]))
    print("  (start = after the first 10 % of the runs; MB/1000 runs = RSS slope from there on, in")
    print("   brackets over the second half only)")
    print("  baseline: the task's history replayed in a fresh interpreter, %d runs: %.2f MB of Python heap"
          " (%.3f MB/1000 runs), %.2f MB of RSS" % (state_runs, heap_mb, history, state_rss_mb))
    for soak in results:
        beyond = soak.figures(n)["slope_late"] - history
        print("  %-9s RSS growth beyond the history it must keep: %+.3f MB/1000 runs -> %s" % (
            soak.name, beyond, "bounded" if beyond <= 0.1 else "GROWS"))

if __name__ == "__main__":
    main()
