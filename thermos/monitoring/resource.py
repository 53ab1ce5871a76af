"""Resource sampling of tasks' process trees, behind Aurora's `TaskResourceMonitor` interface.

Aurora ran a thread per task, and each asked psutil for `children(recursive=True)`, which psutil
answers by reading the stat file of *every* process on the host; at ~100 tasks that pegged a core.
Here a `ResourceSampler` samples any number of tasks on one thread from one process-table snapshot
per sweep (see `process_collector_psutil`). Each task keeps a bounded history of its samples.

Aurora's names and signatures are kept for code written against them: `TaskResourceMonitor(task_id,
task_monitor, ...)` runs its own thread unless it is given `sampler=` (then the shared sampler
drives it), `NullTaskResourceMonitor`, `ResourceMonitorBase` with its result types,
`ResourceHistory.add(timestamp, value)`, `HistoryProvider` and `DiskCollectorProvider`.
Durations are float seconds (Aurora used twitter.common `Amount`s).
"""

from __future__ import annotations

import abc
import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psutil

from thermos.monitoring.disk import DEFAULT_INTERVAL as DISK_INTERVAL
from thermos.monitoring.disk import (
    AbstractDiskCollector,
    DiskCollector,
    DiskCollectorSettings,
    DuDiskCollector,
    MesosDiskCollector,
)
from thermos.monitoring.monitor import TaskMonitor
from thermos.monitoring.process import ProcessSample
from thermos.monitoring.process_collector_psutil import (
    ProcessTable,
    ProcessTreeCollector,
    ProcRecord,
    process_to_sample,
    tree_sample,
)

__all__ = [
    "AggregateResourceResult", "DiskCollectorProvider", "FullResourceResult", "HistoryProvider",
    "MAX_HISTORY", "NullTaskResourceMonitor", "ProcRecord", "ProcResourceResult", "ProcessSample",
    "ProcessTable", "ProcessTreeCollector", "ResourceHistory", "ResourceMonitorBase", "ResourceSampler",
    "TaskResourceMonitor", "TaskSample", "process_to_sample", "tree_sample",
]

log = logging.getLogger(__name__)

MAX_HISTORY = 10000


# ---- results ---------------------------------------------------------------------------------


class AggregateResourceResult(NamedTuple):
    """A task's processes summed: how many processes, their sample, the sandbox's bytes on disk."""

    num_procs: int
    process_sample: ProcessSample
    disk_usage: int


class ProcResourceResult(NamedTuple):
    """One process's tree: its summed sample and how many processes it has."""

    process_sample: ProcessSample
    num_procs: int


class FullResourceResult(NamedTuple):
    """One sample of a task: a ProcResourceResult per RUNNING process, and the sandbox's bytes.

    `proc_usage` is keyed by process name. (Aurora keyed it by ProcessStatus, which Python 3
    Thrift structs cannot be: they are unhashable.)
    """

    proc_usage: Mapping[str, ProcResourceResult]
    disk_usage: int

    def aggregate(self) -> AggregateResourceResult:
        total = ProcessSample.empty()
        for result in self.proc_usage.values():
            total = total + result.process_sample
        return AggregateResourceResult(sum(r.num_procs for r in self.proc_usage.values()), total,
                                       self.disk_usage)


class ResourceMonitorBase(abc.ABC):
    """What a resource monitor answers (Aurora's interface, with its result types nested)."""

    class Error(Exception):
        pass

    AggregateResourceResult = AggregateResourceResult
    ResourceResult = AggregateResourceResult  # the name before Aurora 0.13
    FullResourceResult = FullResourceResult
    ProcResourceResult = ProcResourceResult

    @abc.abstractmethod
    def sample(self) -> tuple[float, AggregateResourceResult]:
        """`(timestamp, AggregateResourceResult)` of the task now."""

    @abc.abstractmethod
    def sample_at(self, timestamp: float) -> tuple[float, AggregateResourceResult]:
        """`(timestamp, AggregateResourceResult)` as close as possible to `timestamp`."""

    @abc.abstractmethod
    def sample_by_process(self, process_name: str) -> ProcessSample:
        """The ProcessSample of one RUNNING process's tree now."""


@dataclass(frozen=True)
class TaskSample:
    """One sweep's view of a task: a sample and a process count per RUNNING process."""

    timestamp: float
    processes: Mapping[str, ProcessSample] = field(default_factory=dict)
    process_counts: Mapping[str, int] = field(default_factory=dict)
    disk_usage: int = 0

    @classmethod
    def from_entry(cls, timestamp: float, full: FullResourceResult) -> TaskSample:
        return cls(timestamp, {name: r.process_sample for name, r in full.proc_usage.items()},
                   {name: r.num_procs for name, r in full.proc_usage.items()}, full.disk_usage)

    def aggregate(self) -> AggregateResourceResult:
        total = ProcessSample.empty()
        for sample in self.processes.values():
            total = total + sample
        return AggregateResourceResult(sum(self.process_counts.values()), total, self.disk_usage)


# ---- history ---------------------------------------------------------------------------------


class ResourceHistory:
    """The newest `maxlen` `(timestamp, value)` entries, in time order (Aurora's ring buffer).

    Starts with `(now, FullResourceResult({}, 0))` unless `initialize` is False, so a monitor
    answers zeros before its first sample. Thread-safe.
    """

    def __init__(self, maxlen: int, initialize: bool = True) -> None:
        if not maxlen >= 1:
            raise ValueError("maxlen must be greater than 0, got %r" % maxlen)
        self._maxlen = maxlen
        self._times: list[float] = []
        self._values: list[tuple[float, Any]] = []
        self._lock = threading.Lock()
        if initialize:
            self.add(time.time(), FullResourceResult({}, 0))

    @property
    def maxlen(self) -> int:
        return self._maxlen

    def add(self, timestamp: float, value: Any) -> None:
        """Append an entry; ValueError if `timestamp` is older than the newest entry's."""
        with self._lock:
            if self._times and not timestamp >= self._times[-1]:
                raise ValueError("Refusing to add timestamp in the past! (%r is before %r)" % (
                    timestamp, self._times[-1]))
            self._times.append(timestamp)
            self._values.append((timestamp, value))
            if len(self._values) > self._maxlen:
                del self._times[0], self._values[0]

    def get(self, timestamp: float) -> tuple[float, Any]:
        """The first entry at or after `timestamp`, else the newest; IndexError if empty."""
        with self._lock:
            if not self._values:
                raise IndexError("the resource history is empty")
            index = bisect.bisect_left(self._times, timestamp)
            return self._values[min(index, len(self._values) - 1)]

    def latest(self) -> tuple[float, Any] | None:
        with self._lock:
            return self._values[-1] if self._values else None

    def __iter__(self) -> Iterator[tuple[float, Any]]:
        with self._lock:
            return iter(list(self._values))

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return "ResourceHistory(%s)" % ", ".join(str(entry) for entry in self)


class HistoryProvider:
    """Makes the ResourceHistory for `history_time` seconds at one entry per `min_collection_interval`."""

    MAX_HISTORY = MAX_HISTORY

    def provides(self, history_time: float, min_collection_interval: float) -> ResourceHistory:
        """ValueError above MAX_HISTORY entries. A history shorter than one interval keeps one
        entry (Aurora raised ValueError for it)."""
        length = int(history_time / min_collection_interval)
        if length > self.MAX_HISTORY:
            raise ValueError("%g s of history at one sample per %g s is %d samples; the limit is %d" % (
                history_time, min_collection_interval, length, self.MAX_HISTORY))
        return ResourceHistory(max(length, 1))


class DiskCollectorProvider:
    """Makes each task's disk collector: `du` of the sandbox, or the Mesos agent's figure."""

    DEFAULT_DISK_COLLECTOR_CLASS: type[AbstractDiskCollector] = DuDiskCollector

    def __init__(self, enable_mesos_disk_collector: bool = False,
                 settings: DiskCollectorSettings | None = None) -> None:
        self.settings = settings or DiskCollectorSettings()
        self.disk_collector_class: type[AbstractDiskCollector] = (
            MesosDiskCollector if enable_mesos_disk_collector else self.DEFAULT_DISK_COLLECTOR_CLASS)

    def provides(self, sandbox: str) -> AbstractDiskCollector:
        return self.disk_collector_class(sandbox, settings=self.settings)


# ---- one task's collectors and history -------------------------------------------------------


class _TaskResources:
    """One task's process collectors, disk collector and history, whoever drives them."""

    def __init__(self, task_id: str, monitor: TaskMonitor, history: ResourceHistory,
                 clock: Callable[[], float]) -> None:
        self.task_id = task_id
        self.monitor = monitor
        self.history = history
        self.clock = clock
        self.collectors: dict[str, ProcessTreeCollector] = {}
        self.disk: DiskCollector | AbstractDiskCollector | None = None
        self.next_disk = 0.0  # monotonic time the next disk collection is due
        self.lock = threading.Lock()

    def _running(self) -> dict[str, int | None]:
        return {status.process: status.pid for status, _run in self.monitor.get_active_processes()}

    def collect_processes(self, table: ProcessTable, now: float) -> None:
        """Sample every RUNNING process's tree from `table`; forget processes that stopped."""
        running = self._running()
        with self.lock:
            for name in [n for n, c in self.collectors.items() if running.get(n, -1) != c.pid]:
                del self.collectors[name]
            for name, pid in running.items():
                collector = self.collectors.get(name)
                if collector is None:
                    collector = self.collectors[name] = ProcessTreeCollector(pid, self.clock)
                collector.sample(table, now)

    def ensure_disk(self, factory: Callable[[str], DiskCollector | AbstractDiskCollector]
                    ) -> DiskCollector | AbstractDiskCollector | None:
        """The disk collector, made once the checkpoint names a sandbox (None until then)."""
        if self.disk is None:
            sandbox = self.monitor.get_sandbox()
            if sandbox:
                self.disk = factory(sandbox)
        return self.disk

    def record(self, now: float) -> None:
        with self.lock:
            usage = {name: ProcResourceResult(c.value, c.procs) for name, c in self.collectors.items()}
        disk = self.disk.value if self.disk is not None else 0
        try:
            self.history.add(now, FullResourceResult(usage, disk))
        except ValueError as err:  # the clock went back: keep the history in order
            log.warning("Not recording a resource sample of %s: %s", self.task_id, err)

    def sample_at(self, timestamp: float) -> tuple[float, AggregateResourceResult]:
        when, full = self.history.get(timestamp)
        return when, full.aggregate()

    def sample_by_process(self, name: str) -> ProcessSample:
        """From the newest history entry if it has this run of the process, else sampled now."""
        pids = [status.pid for status, _run in self.monitor.get_active_processes() if status.process == name]
        if not pids:
            raise ValueError('No active process found with name "%s" in this task' % name)
        pid = pids[-1]
        _, full = self.history.get(self.clock())
        with self.lock:
            collector = self.collectors.get(name)
            if name in full.proc_usage and (collector is None or collector.pid == pid):
                return full.proc_usage[name].process_sample
            if collector is None or collector.pid != pid:
                collector = self.collectors[name] = ProcessTreeCollector(pid, self.clock)
            return collector.sample()


# ---- the shared sampler ----------------------------------------------------------------------


class ResourceSampler:
    """Samples every registered task's RUNNING process trees on one thread.

    Each sweep takes one process-table snapshot, sums each RUNNING process's tree, and appends one
    entry per task to its bounded history. Disk usage: by default the sandboxes are walked by
    incremental `DiskCollector`s within `disk_budget` (a fraction of the interval, shared by all
    tasks); with a `disk_collector_provider` (e.g. `DiskCollectorProvider(True, settings)` for the
    Mesos agent's figures) its collectors are sampled every `disk_interval` instead.
    """

    DEFAULT_INTERVAL = 20.0
    DEFAULT_HISTORY = 3600.0

    def __init__(self, interval: float = DEFAULT_INTERVAL, history: float = DEFAULT_HISTORY,
                 disk_interval: float = DISK_INTERVAL, disk_collection: bool = True,
                 disk_budget: float = 0.01, clock: Callable[[], float] = time.time,
                 disk_collector_provider: DiskCollectorProvider | None = None) -> None:
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
        self._disk_provider = disk_collector_provider
        self._clock = clock
        self._tasks: dict[str, _TaskResources] = {}
        self._disk_turn = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # -- registration

    def make_resources(self, task_id: str, monitor: TaskMonitor) -> _TaskResources:
        """A task's state with this sampler's history length (TaskResourceMonitor keeps it)."""
        return _TaskResources(task_id, monitor, ResourceHistory(self._maxlen), self._clock)

    def add_task(self, task_id: str, monitor: TaskMonitor, resources: _TaskResources | None = None) -> None:
        with self._lock:
            if task_id not in self._tasks:
                self._tasks[task_id] = resources or self.make_resources(task_id, monitor)

    def remove_task(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def has_task(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._tasks

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
                self._sample_task(task, table, now)
            except Exception:  # noqa: BLE001 - one broken task must not stop the others' sampling
                log.exception("Failed to sample task %s", task_id)
        self._step_disks([task for _, task in tasks])

    def _sample_task(self, task: _TaskResources, table: ProcessTable, now: float) -> None:
        task.collect_processes(table, now)
        if self._disk_collection:
            if self._disk_provider is None:
                task.ensure_disk(lambda sandbox: DiskCollector(sandbox, interval=self._disk_interval))
            else:
                disk = task.ensure_disk(self._disk_provider.provides)
                if isinstance(disk, AbstractDiskCollector) and time.monotonic() >= task.next_disk:
                    task.next_disk = time.monotonic() + self._disk_interval
                    disk.sample()
        task.record(now)

    def _step_disks(self, tasks: list[_TaskResources]) -> None:
        """Advance due disk walks, round robin, until this sweep's disk budget is spent."""
        collectors = [task.disk for task in tasks if isinstance(task.disk, DiskCollector) and task.disk.due()]
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

    def _task(self, task_id: str) -> _TaskResources:
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None:
            raise KeyError("task %s is not being sampled" % task_id)
        return task

    def history(self, task_id: str) -> list[TaskSample]:
        """The task's samples, oldest first (the first is the zero entry from registration)."""
        return [TaskSample.from_entry(when, full) for when, full in self._task(task_id).history]

    def latest(self, task_id: str) -> TaskSample:
        """The task's newest sample (the zero entry from registration before the first sweep)."""
        entry = self._task(task_id).history.latest()
        assert entry is not None  # the history starts with an entry and never empties
        return TaskSample.from_entry(*entry)

    def sample(self, task_id: str) -> tuple[float, AggregateResourceResult]:
        """The newest `(timestamp, AggregateResourceResult)`; zeros before the first sweep."""
        return self.sample_at(task_id, self._clock())

    def sample_at(self, task_id: str, timestamp: float) -> tuple[float, AggregateResourceResult]:
        """The first sample at or after `timestamp` (else the newest)."""
        return self._task(task_id).sample_at(timestamp)

    def sample_by_process(self, task_id: str, process_name: str) -> ProcessSample:
        """A RUNNING process's tree: from the newest sweep, or sampled now if it has none yet."""
        return self._task(task_id).sample_by_process(process_name)


# ---- Aurora's monitors -----------------------------------------------------------------------


class TaskResourceMonitor(ResourceMonitorBase, threading.Thread):
    """Aurora's per-task monitor: a daemon thread named `TaskResourceMonitor[<task_id>]`.

    Every `process_collection_interval` it samples each RUNNING process's tree (one process-table
    snapshot serves them all), every `disk_collection_interval` it starts a disk collection (once
    the checkpoint names a sandbox) from `disk_collector_provider`, and it records an entry in a
    history of `history_time` seconds after each step and when a disk result arrives.

    With `sampler=ResourceSampler(...)` no thread of its own runs: `start()` registers the task
    with the shared sampler (whose intervals and disk policy apply) and `kill()` removes it, so
    hundreds of tasks cost one thread and one /proc scan per sweep.
    """

    PROCESS_COLLECTION_INTERVAL = 20.0
    HISTORY_TIME = 3600.0

    def __init__(self, task_id: str, task_monitor: TaskMonitor,
                 disk_collector_provider: DiskCollectorProvider | None = None,
                 process_collection_interval: float = PROCESS_COLLECTION_INTERVAL,
                 disk_collection_interval: float = DiskCollectorSettings.DISK_COLLECTION_INTERVAL,
                 history_time: float = HISTORY_TIME, history_provider: HistoryProvider | None = None,
                 *, sampler: ResourceSampler | None = None, clock: Callable[[], float] = time.time) -> None:
        if isinstance(disk_collector_provider, ResourceSampler):  # this project's earlier call form
            sampler, disk_collector_provider = disk_collector_provider, None
        threading.Thread.__init__(self, name="%s[%s]" % (type(self).__name__, task_id), daemon=True)
        if process_collection_interval <= 0 or disk_collection_interval <= 0:
            raise ValueError("collection intervals must be positive, got %r and %r" % (
                process_collection_interval, disk_collection_interval))
        self._task_id = task_id
        self._task_monitor = task_monitor
        self._disk_collector_provider = disk_collector_provider or DiskCollectorProvider()
        self._process_collection_interval = float(process_collection_interval)
        self._disk_collection_interval = float(disk_collection_interval)
        self._sampler = sampler
        self._clock = clock
        if sampler is not None:
            self._resources = sampler.make_resources(task_id, task_monitor)
        else:
            history = (history_provider or HistoryProvider()).provides(
                history_time, min(self._process_collection_interval, self._disk_collection_interval))
            self._resources = _TaskResources(task_id, task_monitor, history, clock)
        self._kill_signal = threading.Event()
        self._wake = threading.Event()

    @property
    def task_id(self) -> str:
        return self._task_id

    # -- the monitor's life

    def start(self) -> None:
        if self._sampler is None:
            threading.Thread.start(self)
        else:
            self._sampler.add_task(self._task_id, self._task_monitor, self._resources)
            self._sampler.start()

    def kill(self) -> None:
        """Stop collecting (the thread ends within moments; with a sampler, the task is removed)."""
        self._kill_signal.set()
        self._wake.set()
        if self._sampler is not None:
            self._sampler.remove_task(self._task_id)

    def is_alive(self) -> bool:
        if self._sampler is None:
            return threading.Thread.is_alive(self)
        sampler = self._sampler
        return not self._kill_signal.is_set() and sampler.has_task(self._task_id) and sampler.running

    def join(self, timeout: float | None = None) -> None:
        if self._sampler is None:
            threading.Thread.join(self, timeout)

    def run(self) -> None:
        next_process = next_disk = time.monotonic()
        while not self._kill_signal.is_set():
            try:
                now, mono = self._clock(), time.monotonic()
                if mono >= next_process:
                    next_process = mono + self._process_collection_interval
                    self._resources.collect_processes(self._snapshot(), now)
                if mono >= next_disk:
                    next_disk = mono + self._disk_collection_interval
                    self._collect_disk()
                self._resources.record(now)
            except Exception:  # noqa: BLE001 - keep monitoring; the next round may succeed
                log.exception("Resource collection of %s failed", self._task_id)
            delay = min(next_process, next_disk) - time.monotonic()
            if self._wake.wait(max(0.0, delay)):
                self._wake.clear()

    def _snapshot(self) -> ProcessTable:
        """The process table; an empty one if it cannot be read (samples are then empty, as in Aurora)."""
        try:
            return ProcessTable.snapshot()
        except (psutil.Error, OSError) as err:
            log.debug("Cannot read the process table for %s: %s", self._task_id, err)
            return ProcessTable([])

    def _collect_disk(self) -> None:
        disk = self._resources.ensure_disk(self._disk_collector_provider.provides)
        if disk is None:
            log.debug("No sandbox known yet for %s", self._task_id)
            return
        if isinstance(disk, AbstractDiskCollector):
            disk.sample()
            event = disk.completed_event
            if not event.is_set():  # record the result as soon as it arrives
                threading.Thread(target=self._wake_on, args=(event,), daemon=True,
                                 name="%s-disk" % self.name).start()
        else:
            disk.collect()

    def _wake_on(self, event: threading.Event) -> None:
        if event.wait(self._disk_collection_interval):
            self._wake.set()

    # -- queries

    def sample(self) -> tuple[float, AggregateResourceResult]:
        return self.sample_at(self._clock())

    def sample_at(self, timestamp: float) -> tuple[float, AggregateResourceResult]:
        return self._resources.sample_at(timestamp)

    def sample_by_process(self, process_name: str) -> ProcessSample:
        return self._resources.sample_by_process(process_name)


class NullTaskResourceMonitor(ResourceMonitorBase):
    """A monitor that collects nothing and answers zeros (resource collection turned off)."""

    def sample(self) -> tuple[float, AggregateResourceResult]:
        return self.sample_at(time.time())

    def sample_at(self, timestamp: float) -> tuple[float, AggregateResourceResult]:
        return timestamp, AggregateResourceResult(0, ProcessSample.empty(), 0)

    def sample_by_process(self, process_name: str) -> ProcessSample:
        return ProcessSample.empty()

    def start(self) -> None:
        """Nothing to start."""

    def kill(self) -> None:
        """Nothing to stop."""

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        """Nothing to wait for."""
