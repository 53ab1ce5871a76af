"""Coordinator cost: memory per coordinator, rotated-log throughput and start latency, each beside
a baseline measured in the same run.

(a) Memory: a parent that has imported thermos starts N coordinators running `sleep`, and reads
    each one's PSS / RSS / private dirty from /proc/<pid>/smaps_rollup. Burst: started back to back.
    Staggered: the parent does runner-like work (reads every checkpoint, allocates, runs a full GC)
    between starts, with and without the GC freeze that Process keeps. Baselines: the parent's own
    RSS, a bare os.fork() child of the same parent blocked in read() (the floor for any forked
    Python coordinator) and a fresh `python3 -S` interpreter (the alternative of exec'ing one).
(b) Throughput: `cat` of a generated log file through a coordinator in rotate mode (a pipe pumped
    by the coordinator) and in standard mode (the file handed to `cat`), beside `cat src > file`
    and `cat src | cat > file` on the same bytes.
(c) Latency of Process.start() in the runner (fork + FORKED append with fsync).

Usage: python bench/coordinator.py [--coordinators 20] [--megabytes 200]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import thermos.common.ckpt  # noqa: F401 - a parent that looks like a runner
import thermos.config.schema  # noqa: F401
from thermos.common.path import TaskPath
from thermos.common.recordio import ThriftRecordReader
from thermos.core.process import Process
from thermos.gen.thermos.ttypes import ProcessState, RunnerCkpt

try:
    import thermos.core.runner  # noqa: F401 - present once the runner lands
except ImportError:
    pass

MB = 1 << 20


def rollup(pid: int) -> dict[str, int]:
    """kB figures from /proc/<pid>/smaps_rollup."""
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as fp:
        for line in fp:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def records(path: str) -> list:
    try:
        with open(path, "rb") as fp:
            return [r.process_status for r in ThriftRecordReader(fp, RunnerCkpt)]
    except FileNotFoundError:
        return []


def wait_state(path: str, states: set[int], timeout: float = 120.0, poll: float = 0.001):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recs = records(path)
        if recs and recs[-1].state in states:
            return recs
        time.sleep(poll)
    raise TimeoutError("no %s in %s" % (states, path))


def make_process(root: str, name: str, cmdline: str, **kw) -> Process:
    spec = TaskPath(root=root, task_id="bench", process=name, run=0, log_dir=os.path.join(root, "logs"))
    return Process(name, cmdline, 0, spec, os.path.join(root, "sandbox"), **kw)


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def reap() -> None:
    """This parent is a subreaper (as a runner is): collect orphaned user processes."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def runner_work(procs: list[Process]) -> None:
    """What a runner does between two starts: read the checkpoints, allocate, collect."""
    for p in procs:
        records(p.ckpt_file())
    junk = [{"name": "process_%d" % i, "seq": i} for i in range(1000)]
    del junk
    gc.collect()


def memory_bench(n: int, root: str, label: str, rotate: bool = False, stagger: bool = False,
                 freeze: bool = True) -> dict[str, float]:
    kw = {"logger_mode": "rotate", "rotate_log_size": 10 * MB, "rotate_log_backups": 2} if rotate else {}
    saved_freeze = gc.freeze
    if not freeze:
        gc.freeze = lambda: None  # what forking without Process's freeze gives
    procs: list[Process] = []
    try:
        for i in range(n):
            p = make_process(root, "%s%d" % (label, i), "sleep 600", **kw)
            p.start()
            procs.append(p)
            if stagger:
                runner_work(procs)
    finally:
        gc.freeze = saved_freeze
    for p in procs:
        wait_state(p.ckpt_file(), {ProcessState.RUNNING})
    time.sleep(0.2)
    stats = [rollup(p.pid) for p in procs]
    parent = rollup(os.getpid())
    for p in procs:
        kill_group(p.pid)
    time.sleep(0.1)
    reap()
    return {"pss": statistics.mean(s["Pss"] for s in stats) / 1024,
            "rss": statistics.mean(s["Rss"] for s in stats) / 1024,
            "dirty": statistics.mean(s["Private_Dirty"] for s in stats) / 1024,
            "parent_rss": parent["Rss"] / 1024, "parent_pss": parent["Pss"] / 1024}


def bare_fork_bench(n: int) -> dict[str, float]:
    """N plain forks of this parent that only block in read(): the copy-on-write floor."""
    r, w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        pids.append(pid)
    time.sleep(0.2)
    stats = [rollup(pid) for pid in pids]
    os.close(w)
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(r)
    return {"pss": statistics.mean(s["Pss"] for s in stats) / 1024,
            "dirty": statistics.mean(s["Private_Dirty"] for s in stats) / 1024}


def fresh_python_bench(n: int) -> dict[str, float]:
    procs = [subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(600)"])
             for _ in range(n)]
    time.sleep(0.5)
    stats = [rollup(p.pid) for p in procs]
    for p in procs:
        p.kill()
        p.wait()
    return {"pss": statistics.mean(s["Pss"] for s in stats) / 1024,
            "dirty": statistics.mean(s["Private_Dirty"] for s in stats) / 1024}


def make_source(path: str, megabytes: int) -> int:
    line = b"2026-01-01 12:00:00,000 INFO some.component: request handled in 12 ms, status=200 ok\n"
    block = line * (MB // len(line) + 1)
    with open(path, "wb") as fp:
        for _ in range(megabytes):
            fp.write(block[:MB])
    with open(path, "rb") as fp:  # warm the page cache so every contender reads from memory
        while fp.read(8 * MB):
            pass
    return megabytes * MB


def timed_shell(cmd: str) -> float:
    start = time.perf_counter()
    subprocess.run(["/bin/bash", "-c", cmd], check=True)
    return time.perf_counter() - start


def timed_coordinator(root: str, name: str, src: str, **kw) -> float:
    """From start() to the coordinator's exit (waitpid: polling the checkpoint would steal a CPU)."""
    p = make_process(root, name, "cat %s" % src, **kw)
    start = time.perf_counter()
    p.start()
    os.waitpid(p.pid, 0)
    elapsed = time.perf_counter() - start
    final = records(p.ckpt_file())[-1]
    assert final.state == ProcessState.SUCCESS, final
    return elapsed


def throughput_bench(root: str, megabytes: int, repeat: int = 5) -> dict[str, float]:
    src = os.path.join(root, "source.log")
    size = make_source(src, megabytes)
    dst = os.path.join(root, "dst")
    rotate = {"logger_mode": "rotate", "rotate_log_size": 10 * MB, "rotate_log_backups": 5}
    times: dict[str, list[float]] = {k: [] for k in ("cat", "catpipe", "rotate", "standard")}
    timed_coordinator(root, "warmup", src)
    for i in range(repeat):  # each contender writes fresh files, after a sync
        for key, cmd in (("cat", "cat %s > %s"), ("catpipe", "cat %s | cat > %s")):
            os.sync()
            times[key].append(timed_shell(cmd % (src, dst)))
            os.unlink(dst)
        os.sync()
        times["rotate"].append(timed_coordinator(root, "rotate%d" % i, src, **rotate))
        os.sync()
        times["standard"].append(timed_coordinator(root, "standard%d" % i, src))
        shutil.rmtree(os.path.join(root, "logs"))
    return {k: size / min(v) / MB for k, v in times.items()}


def start_latency_bench(root: str, n: int) -> dict[str, float]:
    lat = []
    procs = []
    for i in range(n):
        p = make_process(root, "lat%d" % i, "true")
        start = time.perf_counter()
        p.start()
        lat.append((time.perf_counter() - start) * 1000)
        procs.append(p)
    to_running = []
    for p in procs:
        forked, running, _ = wait_state(p.ckpt_file(), {ProcessState.SUCCESS})
        to_running.append((running.start_time - forked.fork_time) * 1000)
        os.waitpid(p.pid, 0)
    spawn = []
    for _ in range(n):
        start = time.perf_counter()
        pid = os.posix_spawn("/bin/true", ["true"], os.environ)
        spawn.append((time.perf_counter() - start) * 1000)
        os.waitpid(pid, 0)
    return {"start_p50": statistics.median(lat), "start_max": max(lat),
            "running_p50": statistics.median(to_running), "spawn_p50": statistics.median(spawn)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinators", type=int, default=20)
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    n = args.coordinators
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as root:
        nofreeze = memory_bench(n, root, "nofreeze", stagger=True, freeze=False)  # first: nothing frozen yet
        mem = {
            "burst, file/standard": memory_bench(n, root, "std"),
            "burst, file/rotate (pumped)": memory_bench(n, root, "rot", rotate=True),
            "staggered (runner work + full GC between)": memory_bench(n, root, "stag", stagger=True),
        }
        bare = bare_fork_bench(n)
        fresh = fresh_python_bench(n)
        lat = start_latency_bench(root, 50)
        thr = throughput_bench(root, args.megabytes)

    print("coordinator memory with %d running `sleep` coordinators (MB, mean per process)" % n)
    print("  %-54s %7s %7s %7s" % ("", "PSS", "RSS", "dirty"))
    for label, m in mem.items():
        print("  %-54s %7.2f %7.2f %7.2f" % ("coordinator, " + label, m["pss"], m["rss"], m["dirty"]))
    print("  %-54s %7.2f %7.2f %7.2f" % ("baseline: same, staggered, without the GC freeze",
                                         nofreeze["pss"], nofreeze["rss"], nofreeze["dirty"]))
    print("  %-54s %7.2f %7s %7.2f" % ("baseline: bare os.fork() child blocked in read()",
                                       bare["pss"], "", bare["dirty"]))
    print("  %-54s %7.2f %7s %7.2f" % ("baseline: fresh `python3 -S` process", fresh["pss"], "",
                                       fresh["dirty"]))
    parent = mem["burst, file/standard"]
    print("  %-54s %7.2f %7.2f" % ("parent that forked them (imported thermos)", parent["parent_pss"],
                                   parent["parent_rss"]))
    print("  goal <= 3 MB PSS per coordinator: " + "; ".join(
        "%s %.2f %s" % (label, m["pss"], "met" if m["pss"] <= 3 else "MISSED")
        for label, m in mem.items()))
    print("start latency, 50 starts of `true` (ms)")
    print("  %-54s p50 %.2f  max %.2f" % ("Process.start()", lat["start_p50"], lat["start_max"]))
    print("  %-54s p50 %.2f" % ("fork_time -> RUNNING start_time (coordinator ready)",
                                lat["running_p50"]))
    print("  %-54s p50 %.2f" % ("baseline: os.posix_spawn('/bin/true') + wait", lat["spawn_p50"]))
    print("log throughput, %d MB of log lines (MB/s, best of 5)" % args.megabytes)
    print("  %-54s %7.0f" % ("coordinator, file/rotate 10 MB x 5 backups", thr["rotate"]))
    print("  %-54s %7.0f" % ("coordinator, file/standard (file handed to cat)", thr["standard"]))
    print("  %-54s %7.0f" % ("baseline: cat src > file", thr["cat"]))
    print("  %-54s %7.0f" % ("baseline: cat src | cat > file", thr["catpipe"]))
    ratio = thr["rotate"] / thr["cat"]
    print("  rotate vs cat > file: %.0f%% (goal >= 50%%: %s)" % (ratio * 100, "met" if ratio >= 0.5 else
                                                               "MISSED"))


if __name__ == "__main__":
    main()
