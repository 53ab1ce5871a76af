"""thermos_observer at 100 active + 2000 finished tasks, as a real service over HTTP.

The finished tasks are synthetic runner checkpoints (3 processes x 2 runs); the active ones are
checkpoints whose processes are RUNNING with the pids of real `sleep` processes, so the resource
sampler has real process trees to sample. Prints, beside same-run baselines:
  raw read          list the tasks and read every checkpoint's bytes (the floor of any refresh)
  aurora replay     CheckpointDispatcher.from_file of every checkpoint (what Aurora re-did)
  cold start        spawn -> first /j/task_ids answer, no cache (the first refresh replays all)
  restart           the same with the summary cache the first run left (<= 1 s goal)
  p50 latencies     /main (HTML list, if pages are installed), /j/task_ids, a task page, /metrics
  idle CPU and RSS  of the observer at the default intervals (poll 5 s, processes 20 s, disk 60 s)
Goals: <= 100 ms p50 for the list, <= 5 % of a core idle, <= 60 MB RSS.

Usage: python bench/observer.py [--active N] [--finished N] [--idle SECONDS] [--requests N]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from thermos.observer.task_observer import TaskObserver  # noqa: E402

from thermos.common.ckpt import CheckpointDispatcher  # noqa: E402
from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt, TaskState  # noqa: E402
from thermos.monitoring.detector import FixedPathDetector, TaskDetector  # noqa: E402
from thermos.testing import ckpt as synth  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def build_root(root: str, active: int, finished: int) -> list[subprocess.Popen]:
    sleepers = []
    for state, count in (("active", active), ("finished", finished)):
        os.makedirs(os.path.join(root, "tasks", state), exist_ok=True)
        for i in range(count):
            task_id = "%s_task_%05d" % (state, i)
            sandbox = os.path.join(root, "sb", task_id)
            os.makedirs(sandbox, exist_ok=True)
            with open(os.path.join(sandbox, "data"), "wb") as fp:
                fp.write(b"x" * 8192)
            path = os.path.join(root, "checkpoints", task_id, "runner")
            if state == "finished":
                records = list(synth.runner_stream(processes=3, runs=2, task_id=task_id, sandbox=sandbox))
            else:
                sleeper = subprocess.Popen(["sleep", "3600"])
                sleepers.append(sleeper)
                now = time.time()
                records = [synth.task_status(TaskState.ACTIVE, timestamp_ms=int(now * 1000)),
                           synth.header(task_id=task_id, sandbox=sandbox, launch_time_ms=int(now * 1000))]
                records += [RunnerCkpt(process_status=ProcessStatus(
                    seq=0, process="main", state=ProcessState.WAITING)),
                    RunnerCkpt(process_status=ProcessStatus(seq=1, process="main", state=ProcessState.FORKED,
                                                            fork_time=now, coordinator_pid=sleeper.pid)),
                    RunnerCkpt(process_status=ProcessStatus(seq=2, process="main", state=ProcessState.RUNNING,
                                                            start_time=now, pid=sleeper.pid))]
            synth.write_stream(path, records)
            with open(os.path.join(root, "tasks", state, task_id), "w") as fp:
                fp.write('{"name": "%s", "processes": [{"name": "main", "cmdline": "sleep 3600"}]}' % task_id)
    return sleepers


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


class Observer:
    def __init__(self, root: str, state_dir: str, log: str) -> None:
        self.log = log
        self.started = time.perf_counter()
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "thermos.observer.main", "--root", root, "--mesos-root", "",
                 "--ip", "127.0.0.1", "--port", "0", "--state_dir", state_dir, "--log_level", "WARNING"],
                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        # --log_level WARNING hides the startup line, so the port comes from /proc's socket table.
        self.url = "http://127.0.0.1:%d" % self._wait_port()
        while True:
            try:
                get(self.url + "/j/task_ids")
                break
            except OSError:
                time.sleep(0.005)
        self.first_page = time.perf_counter() - self.started

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("observer exited: %s" % open(self.log).read())
            port = listening_port(self.proc.pid)
            if port:
                return port
            time.sleep(0.002)
        raise SystemExit("observer did not listen within 120 s")

    def cpu_seconds(self) -> float:
        with open("/proc/%d/stat" % self.proc.pid) as fp:
            fields = fp.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        with open("/proc/%d/status" % self.proc.pid) as fp:
            found = re.search(r"VmRSS:\s+(\d+) kB", fp.read())
        return int(found.group(1)) / 1024 if found else 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def listening_port(pid: int) -> int | None:
    """The TCP port a process listens on, from its socket inodes and /proc/net/tcp."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return None
    with open("/proc/net/tcp") as fp:
        for line in fp.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:
                return int(parts[1].split(":")[1], 16)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--active", type=int, default=100)
    parser.add_argument("--finished", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    parser.add_argument("--requests", type=int, default=30)
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="thermos-bench-observer-") as base:
        root, state = os.path.join(base, "root"), os.path.join(base, "state")
        sleepers = build_root(root, opts.active, opts.finished)
        try:
            def raw() -> None:
                detector = TaskDetector(root)
                for _, task_id in detector.get_task_ids():
                    with open(detector.get_checkpoint(task_id), "rb") as fp:
                        fp.read()

            def aurora() -> None:
                detector = TaskDetector(root)
                for _, task_id in detector.get_task_ids():
                    CheckpointDispatcher.from_file(detector.get_checkpoint(task_id))

            def observer_start(state_dir: str | None) -> float:
                """Seconds TaskObserver.start() takes (its first refresh); stopping is not timed."""
                obs = TaskObserver(FixedPathDetector(root), state_dir=state_dir, resource_collection=False)
                started = time.perf_counter()
                obs.start()
                elapsed = time.perf_counter() - started
                obs.stop()
                return elapsed

            raw()
            raw_read, replay = timed(raw, 5), timed(aurora, 5)
            start_cold = statistics.median(observer_start(None) for _ in range(3))
            observer_start(os.path.join(base, "inproc"))
            start_warm = statistics.median(observer_start(os.path.join(base, "inproc")) for _ in range(3))
            bare = timed(lambda: subprocess.run(
                [sys.executable, "-c", "import thermos.observer.main, flask, waitress, prometheus_client"],
                check=True), 3)

            cold = Observer(root, state, os.path.join(base, "cold.log"))
            cold.stop()
            observer = Observer(root, state, os.path.join(base, "warm.log"))
            try:
                url = observer.url
                get(url + "/health")
                has_pages = True
                try:
                    get(url + "/main/all/0/20")
                except OSError:
                    has_pages = False
                task = "active_task_00007"
                latencies = [("/j/task_ids (20 rows)", url + "/j/task_ids/all/0/20"),
                             ("/j/task/<id>", url + "/j/task/" + task),
                             ("/metrics", url + "/metrics")]
                if has_pages:
                    latencies[:0] = [("/main/all/0/20 (HTML list)", url + "/main/all/0/20"),
                                     ("/task/<id> (HTML page)", url + "/task/" + task)]
                figures = [(name, timed(lambda u=u: get(u), opts.requests)) for name, u in latencies]
                metrics_size = len(get(url + "/metrics"))
                time.sleep(2)  # let the request burst settle before measuring idle CPU
                cpu_before, wall_before = observer.cpu_seconds(), time.perf_counter()
                time.sleep(opts.idle)
                idle = (observer.cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
                rss = observer.rss_mb()
            finally:
                observer.stop()
        finally:
            for sleeper in sleepers:
                sleeper.kill()
                sleeper.wait()

    print("observer over %d active + %d finished tasks (p50 of %d requests)" % (
        opts.active, opts.finished, opts.requests))
    print("  %-44s %8.1f ms" % ("raw read of every checkpoint (baseline)", raw_read * 1e3))
    print("  %-44s %8.1f ms" % ("aurora replay of every checkpoint", replay * 1e3))
    print("  %-44s %8.1f ms" % ("TaskObserver first refresh, no cache", start_cold * 1e3))
    print("  %-44s %8.1f ms" % ("TaskObserver first refresh, summary cache", start_warm * 1e3))
    print("  %-44s %8.1f ms" % ("python + import observer deps (baseline)", bare * 1e3))
    print("  %-44s %8.1f ms" % ("cold start to first answer (no cache)", cold.first_page * 1e3))
    print("  %-44s %8.1f ms   goal <= 1000 ms" % ("restart to first answer (summary cache)",
                                                  observer.first_page * 1e3))
    for name, seconds in figures:
        print("  %-44s %8.2f ms" % (name + " p50", seconds * 1e3))
    print("  %-44s %8d bytes" % ("/metrics size", metrics_size))
    print("  %-44s %8.2f %%    goal <= 5 %% (%.0f s at default intervals)" % (
        "idle CPU of one core", idle * 100, opts.idle))
    print("  %-44s %8.1f MB   goal <= 60 MB" % ("RSS", rss))
    print("  goal: list <= 100 ms p50; Aurora: 480 ms per refresh at 55 + 2004 tasks")


if __name__ == "__main__":
    main()
