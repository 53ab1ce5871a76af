"""Resource sampling of tasks' process trees: one sampler thread for any number of tasks.

Aurora ran a thread per task, and each asked psutil for `children(recursive=True)`, which psutil
answers by reading the stat file of *every* process on the host; at ~100 tasks that pegged a core.
Here one `ProcessTable` snapshot per sweep serves every task: on Linux each `/proc/<pid>/stat` is
read once and already holds the parent pid, CPU times, thread count, nice, state and memory, so no
other per-process call is needed. Each task keeps a bounded history of its samples.
"""

from __future__ import annotations

import bisect
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import psutil

from thermos.monitoring.disk import DEFAULT_INTERVAL as DISK_INTERVAL
from thermos.monitoring.disk import DiskCollector
from thermos.monitoring.monitor import TaskMonitor

log = logging.getLogger(__name__)

_CLK_TCK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_BOOT_TIME = psutil.boot_time()  # /proc start times count from boot; samples use the epoch

# /proc/<pid>/stat state letters, named as psutil names them.
_STATES = {
    "R": psutil.STATUS_RUNNING, "S": psutil.STATUS_SLEEPING, "D": psutil.STATUS_DISK_SLEEP,
    "Z": psutil.STATUS_ZOMBIE, "T": psutil.STATUS_STOPPED, "t": psutil.STATUS_TRACING_STOP,
    "X": psutil.STATUS_DEAD, "I": psutil.STATUS_IDLE, "P": psutil.STATUS_PARKED,
    "W": psutil.STATUS_WAKING,
}


class ProcRecord(NamedTuple):
    """One process at snapshot time; `start` (epoch seconds) tells a reused pid apart."""

    pid: int
    ppid: int
    status: str
    user: float
    system: float
    nice: int
    threads: int
    start: float
    vms: int
    rss: int


def _parse_stat(pid: int, raw: bytes) -> ProcRecord | None:
    # The command name is in parentheses and may itself contain spaces or ')'.
    close = raw.rfind(b")")
    if close < 0:
        return None
    f = raw[close + 2:].split()
    if len(f) < 22:
        return None
    state = f[0].decode("ascii", "replace")
    return ProcRecord(
        pid=pid, ppid=int(f[1]), status=_STATES.get(state, state),
        user=int(f[11]) / _CLK_TCK, system=int(f[12]) / _CLK_TCK, nice=int(f[16]),
        threads=int(f[17]), start=_BOOT_TIME + int(f[19]) / _CLK_TCK, vms=int(f[20]),
        rss=int(f[21]) * _PAGE_SIZE)


def _scan_linux(proc: str = "/proc") -> Iterable[ProcRecord]:
    with os.scandir(proc) as it:
        pids = [int(entry.name) for entry in it if entry.name.isdigit()]
    for pid in pids:
        try:
            with open("%s/%d/stat" % (proc, pid), "rb") as fp:
                raw = fp.read()
        except OSError:
            continue  # exited since the directory listing
        record = _parse_stat(pid, raw)
        if record is not None:
            yield record


def _scan_psutil() -> Iterable[ProcRecord]:
    attrs = ["ppid", "status", "cpu_times", "nice", "num_threads", "create_time", "memory_info"]
    for proc in psutil.process_iter(attrs):
        info = proc.info
        times, memory = info.get("cpu_times"), info.get("memory_info")
        if times is None or memory is None or info.get("ppid") is None:
            continue
        yield ProcRecord(
            pid=proc.pid, ppid=info["ppid"], status=info.get("status") or "", user=times.user,
            system=times.system, nice=info.get("nice") or 0, threads=info.get("num_threads") or 0,
            start=info.get("create_time") or 0.0, vms=memory.vms, rss=memory.rss)


class ProcessTable:
    """A snapshot of every process, with a parent -> children index."""

    def __init__(self, records: Iterable[ProcRecord]) -> None:
        self._records: dict[int, ProcRecord] = {}
        self._children: dict[int, list[int]] = {}
        for record in records:
            self._records[record.pid] = record
            self._children.setdefault(record.ppid, []).append(record.pid)

    @classmethod
    def snapshot(cls) -> ProcessTable:
        if sys.platform.startswith("linux") and os.path.isdir("/proc/self"):
            return cls(_scan_linux())
        return cls(_scan_psutil())

    def __len__(self) -> int:
        return len(self._records)

    def get(self, pid: int) -> ProcRecord | None:
        return self._records.get(pid)

    def tree(self, pid: int) -> list[ProcRecord]:
        """`pid` and all its descendants that exist in the snapshot ([] if `pid` is gone)."""
        root = self._records.get(pid)
        if root is None:
            return []
        found, stack = [root], [pid]
        while stack:
            for child in self._children.get(stack.pop(), ()):
                record = self._records.get(child)
                if record is not None:
                    found.append(record)
                    stack.append(child)
        return found


# ---- samples ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSample:
    """Resource use of one process or a sum of them. `rate` is CPU cores in use (1.0 = one core)."""

    rate: float = 0.0
    user: float = 0.0
    system: float = 0.0
    rss: int = 0
    vms: int = 0
    nice: int | None = None
    status: str | None = None
    threads: int = 0

    @classmethod
    def empty(cls) -> ProcessSample:
        return cls()

    def __add__(self, other: ProcessSample) -> ProcessSample:
        return ProcessSample(
            rate=self.rate + other.rate, user=self.user + other.user, system=self.system + other.system,
            rss=self.rss + other.rss, vms=self.vms + other.vms,
            nice=other.nice if other.nice is not None else self.nice,
            status=other.status if other.status is not None else self.status,
            threads=self.threads + other.threads)

    def to_dict(self) -> dict[str, object]:
        """Aurora's observer JSON shape (cpu = rate, ram = rss)."""
        return dict(cpu=self.rate, ram=self.rss, user=self.user, system=self.system, rss=self.rss,
                    vms=self.vms, nice=self.nice, status=str(self.status), threads=self.threads)


def tree_sample(records: list[ProcRecord], rate: float = 0.0) -> ProcessSample:
    """The sum of a process tree; nice and status are the root's (the first record)."""
    if not records:
        return ProcessSample.empty()
    root = records[0]
    return ProcessSample(
        rate=rate, user=sum(r.user for r in records), system=sum(r.system for r in records),
        rss=sum(r.rss for r in records), vms=sum(r.vms for r in records), nice=root.nice,
        status=root.status, threads=sum(r.threads for r in records))


def process_to_sample(process: psutil.Process) -> ProcessSample:
    """A sample of one psutil.Process (rate 0: a rate needs two samples); empty if it is gone."""
    try:
        with process.oneshot():
            times, memory = process.cpu_times(), process.memory_info()
            return ProcessSample(rate=0.0, user=times.user, system=times.system, rss=memory.rss,
                                 vms=memory.vms, nice=process.nice(), status=process.status(),
                                 threads=process.num_threads())
    except (psutil.Error, OSError):
        return ProcessSample.empty()


class ProcessTreeCollector:
    """Samples one process tree on demand; the CPU rate comes from consecutive samples."""

    def __init__(self, pid: int, clock: Callable[[], float] = time.time) -> None:
        self._pid = pid
        self._clock = clock
        self._tracker = _CpuTracker()
        self._value = ProcessSample.empty()
        self._procs = 0

    def sample(self, table: ProcessTable | None = None) -> ProcessSample:
        try:
            records = (table or ProcessTable.snapshot()).tree(self._pid)
        except (psutil.Error, OSError) as err:
            log.debug("Cannot sample process tree of %d: %s", self._pid, err)
            records = []
        now = self._clock()
        self._value = tree_sample(records, self._tracker.rate(records, now))
        self._procs = len(records)
        return self._value

    @property
    def value(self) -> ProcessSample:
        return self._value

    @property
    def procs(self) -> int:
        return self._procs


class _CpuTracker:
    """CPU rate of a changing set of processes between two consecutive samples."""

    def __init__(self) -> None:
        self._last: dict[tuple[int, float], float] = {}
        self._last_time: float | None = None

    def rate(self, records: Iterable[ProcRecord], now: float) -> float:
        current = {(r.pid, r.start): r.user + r.system for r in records}
        used = 0.0
        if self._last_time is not None:
            for (pid, start), cpu in current.items():
                before = self._last.get((pid, start))
                if before is not None:
                    used += max(0.0, cpu - before)
                elif start >= self._last_time:
                    used += cpu  # born since the last sample: all of its CPU is new
        elapsed = now - self._last_time if self._last_time is not None else 0.0
        self._last, self._last_time = current, now
        return used / elapsed if elapsed > 0 else 0.0


# ---- history ---------------------------------------------------------------------------------


class AggregateResourceResult(NamedTuple):
    """A task's processes summed: how many processes, their sample, the sandbox's bytes on disk."""

    num_procs: int
    process_sample: ProcessSample
    disk_usage: int


@dataclass(frozen=True)
class TaskSample:
    """One sweep's view of a task: a sample and a process count per RUNNING process."""

    timestamp: float
    processes: Mapping[str, ProcessSample] = field(default_factory=dict)
    process_counts: Mapping[str, int] = field(default_factory=dict)
    disk_usage: int = 0

    def aggregate(self) -> AggregateResourceResult:
        total = ProcessSample.empty()
        for sample in self.processes.values():
            total = total + sample
        return AggregateResourceResult(sum(self.process_counts.values()), total, self.disk_usage)


class ResourceHistory:
    """The newest `maxlen` TaskSamples of one task, in time order."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("history length must be at least 1, got %d" % maxlen)
        self._maxlen = maxlen
        self._times: list[float] = []
        self._samples: list[TaskSample] = []

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, sample: TaskSample) -> None:
        if self._times and sample.timestamp < self._times[-1]:
            raise ValueError("sample at %.3f is older than the newest one (%.3f)" % (
                sample.timestamp, self._times[-1]))
        self._times.append(sample.timestamp)
        self._samples.append(sample)
        if len(self._samples) > self._maxlen:
            del self._times[0], self._samples[0]

    def get(self, timestamp: float) -> TaskSample | None:
        """The first sample taken at or after `timestamp`, else the newest; None if empty."""
        if not self._samples:
            return None
        index = bisect.bisect_left(self._times, timestamp)
        return self._samples[min(index, len(self._samples) - 1)]

    def latest(self) -> TaskSample | None:
        return self._samples[-1] if self._samples else None

    def samples(self) -> list[TaskSample]:
        return list(self._samples)


# ---- the sampler -----------------------------------------------------------------------------

MAX_HISTORY = 10000


@dataclass
class _Task:
    monitor: TaskMonitor
    history: ResourceHistory
    trackers: dict[str, _CpuTracker] = field(default_factory=dict)
    disk: DiskCollector | None = None


class ResourceSampler:
    """Samples every registered task's RUNNING process trees on one thread.

    Each sweep takes one process-table snapshot, sums each RUNNING process's tree, advances the
    due sandbox disk walks within `disk_budget` (a fraction of the interval, shared by all tasks),
    and appends one TaskSample per task to its bounded history.
    """

    DEFAULT_INTERVAL = 20.0
    DEFAULT_HISTORY = 3600.0

    def __init__(self, interval: float = DEFAULT_INTERVAL, history: float = DEFAULT_HISTORY,
                 disk_interval: float = DISK_INTERVAL, disk_collection: bool = True,
                 disk_budget: float = 0.01, clock: Callable[[], float] = time.time) -> None:
        if interval <= 0:
            raise ValueError("sampling interval must be positive, got %r" % interval)
        self._maxlen = int(history / interval)
        if self._maxlen > MAX_HISTORY:
            raise ValueError("%.0f s of history at one sample per %.1f s is %d samples; the limit is %d" % (
                history, interval, self._maxlen, MAX_HISTORY))
        self._maxlen = max(self._maxlen, 1)
        self._interval = interval
        self._disk_interval = disk_interval
        self._disk_collection = disk_collection
        self._disk_budget = disk_budget
        self._clock = clock
        self._tasks: dict[str, _Task] = {}
        self._disk_turn = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return self._interval

    # -- registration

    def add_task(self, task_id: str, monitor: TaskMonitor) -> None:
        with self._lock:
            if task_id not in self._tasks:
                self._tasks[task_id] = _Task(monitor, ResourceHistory(self._maxlen))

    def remove_task(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def task_ids(self) -> list[str]:
        with self._lock:
            return list(self._tasks)

    # -- sampling

    def sweep(self, table: ProcessTable | None = None) -> None:
        """Sample every task once (what the thread does each interval)."""
        table = table or ProcessTable.snapshot()
        now = self._clock()
        with self._lock:
            tasks = list(self._tasks.items())
        for task_id, task in tasks:
            try:
                sample = self._sample_task(task, table, now)
            except Exception:  # noqa: BLE001 - one broken task must not stop the others' sampling
                log.exception("Failed to sample task %s", task_id)
                continue
            with self._lock:
                task.history.add(sample)
        self._step_disks([task for _, task in tasks])

    def _sample_task(self, task: _Task, table: ProcessTable, now: float) -> TaskSample:
        processes: dict[str, ProcessSample] = {}
        counts: dict[str, int] = {}
        running = set()
        for status, _run in task.monitor.get_active_processes():
            name = status.process
            running.add(name)
            records = table.tree(status.pid) if status.pid else []
            tracker = task.trackers.setdefault(name, _CpuTracker())
            processes[name] = tree_sample(records, tracker.rate(records, now))
            counts[name] = len(records)
        for name in list(task.trackers):
            if name not in running:
                del task.trackers[name]
        if self._disk_collection and task.disk is None:
            sandbox = task.monitor.get_sandbox()
            if sandbox:
                task.disk = DiskCollector(sandbox, interval=self._disk_interval)
        return TaskSample(now, processes, counts, task.disk.value if task.disk else 0)

    def _step_disks(self, tasks: list[_Task]) -> None:
        """Advance due disk walks, round robin, until this sweep's disk budget is spent."""
        collectors = [task.disk for task in tasks if task.disk is not None and task.disk.due()]
        if not collectors:
            return
        deadline = time.perf_counter() + self._interval * self._disk_budget
        start = self._disk_turn % len(collectors)
        for collector in collectors[start:] + collectors[:start]:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            collector.step(budget=remaining)
            self._disk_turn += 1

    # -- the thread

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ResourceSampler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        next_due = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - keep sampling; the next sweep may succeed
                log.exception("Resource sampling sweep failed")
            next_due = max(next_due + self._interval, time.monotonic())
            self._stop.wait(max(0.0, next_due - time.monotonic()))

    # -- queries

    def _task(self, task_id: str) -> _Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise KeyError("task %s is not being sampled" % task_id)
        return task

    def history(self, task_id: str) -> list[TaskSample]:
        with self._lock:
            return self._task(task_id).history.samples()

    def sample(self, task_id: str) -> tuple[float, AggregateResourceResult]:
        """The newest `(timestamp, AggregateResourceResult)`; zeros before the first sweep."""
        with self._lock:
            latest = self._task(task_id).history.latest()
        if latest is None:
            return self._clock(), AggregateResourceResult(0, ProcessSample.empty(), 0)
        return latest.timestamp, latest.aggregate()

    def sample_at(self, task_id: str, timestamp: float) -> tuple[float, AggregateResourceResult]:
        """The first sample at or after `timestamp` (else the newest)."""
        with self._lock:
            found = self._task(task_id).history.get(timestamp)
        if found is None:
            return self.sample(task_id)
        return found.timestamp, found.aggregate()

    def sample_by_process(self, task_id: str, process_name: str) -> ProcessSample:
        """A RUNNING process's tree: from the newest sweep, or sampled now if it has none yet."""
        with self._lock:
            task = self._task(task_id)
            latest = task.history.latest()
        for status, _run in task.monitor.get_active_processes():
            if status.process != process_name:
                continue
            if latest is not None and process_name in latest.processes:
                return latest.processes[process_name]
            return tree_sample(ProcessTable.snapshot().tree(status.pid) if status.pid else [])
        raise ValueError("process %s of task %s is not running" % (process_name, task_id))


class TaskResourceMonitor:
    """Aurora's per-task interface (start/kill/sample/...), served by a shared ResourceSampler.

    Lets code written against Aurora's thread-per-task monitor keep its calls while every task
    is sampled by the one sampler thread.
    """

    def __init__(self, task_id: str, task_monitor: TaskMonitor, sampler: ResourceSampler) -> None:
        self._task_id = task_id
        self._task_monitor = task_monitor
        self._sampler = sampler

    @property
    def task_id(self) -> str:
        return self._task_id

    def start(self) -> None:
        self._sampler.add_task(self._task_id, self._task_monitor)
        self._sampler.start()

    def kill(self) -> None:
        self._sampler.remove_task(self._task_id)

    def sample(self) -> tuple[float, AggregateResourceResult]:
        return self._sampler.sample(self._task_id)

    def sample_at(self, timestamp: float) -> tuple[float, AggregateResourceResult]:
        return self._sampler.sample_at(self._task_id, timestamp)

    def sample_by_process(self, process_name: str) -> ProcessSample:
        return self._sampler.sample_by_process(self._task_id, process_name)
