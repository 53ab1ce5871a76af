"""Resource limits: fail a task that outgrows its reservation (spec §1.10).

`ResourceManager` samples the task with the landed monitor (`TaskResourceMonitor` reading the
runner checkpoint: the RUNNING processes' trees, and the sandbox named in the header) and reports
TASK_FAILED when the sandbox holds more bytes than ``resources.disk``, with Aurora's message
``Disk limit exceeded.  Reserved <limit> bytes vs used <used> bytes.`` (two spaces, as Aurora).

Memory is only a metric in Aurora, because Mesos' cgroups normally enforce it. With
``enforce_memory`` (an executor flag for hosts without that isolation) the summed RSS of the
task's process trees above ``resources.ram`` is a TASK_FAILED too:
``Memory limit exceeded.  Reserved <limit> bytes vs used <used> bytes.``

The monitoring code (psutil, the disk collectors) is imported and the monitor built on a thread of
its own when the checker starts, so neither the executor's start nor TASK_RUNNING waits for it; the
checker has no opinion until the monitor exists.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from thermos.executor.checkers.base import TASK_FAILED, StatusChecker, StatusResult

if TYPE_CHECKING:
    from thermos.executor.task_info import ExecutorTask, TaskResources

    from thermos.monitoring.resource import AggregateResourceResult, ResourceMonitorBase

log = logging.getLogger(__name__)

PROCESS_COLLECTION_INTERVAL = 20.0
DISK_COLLECTION_INTERVAL = 60.0
DISK_EXCEEDED = 'Disk limit exceeded.  Reserved %d bytes vs used %d bytes.'
MEMORY_EXCEEDED = 'Memory limit exceeded.  Reserved %d bytes vs used %d bytes.'


def judge(sample: AggregateResourceResult, limits: TaskResources, enforce_memory: bool = False
          ) -> StatusResult | None:
    """The verdict on one sample: FAILED naming the resource, the use and the limit, else None."""
    if limits.disk and sample.disk_usage > limits.disk:
        return StatusResult(DISK_EXCEEDED % (limits.disk, sample.disk_usage), TASK_FAILED)
    rss = sample.process_sample.rss
    if enforce_memory and limits.ram and rss > limits.ram:
        return StatusResult(MEMORY_EXCEEDED % (limits.ram, rss), TASK_FAILED)
    return None


class ResourceManager(StatusChecker):
    """Watches one task's disk (and optionally memory) against its reservation.

    Give it a `monitor`, or a `make_monitor` that builds one on a background thread at `start()`.
    """

    def __init__(self, limits: TaskResources, monitor: ResourceMonitorBase | None = None,
                 enforce_memory: bool = False,
                 make_monitor: Callable[[], ResourceMonitorBase] | None = None) -> None:
        if (monitor is None) == (make_monitor is None):
            raise ValueError('give either a monitor or make_monitor')
        self.limits = limits
        self.monitor = monitor
        self.enforce_memory = enforce_memory
        self._make_monitor = make_monitor
        self._lock = threading.Lock()
        self._stopped = False
        self._verdict: StatusResult | None = None

    @property
    def name(self) -> str:
        return 'resource_manager'

    @property
    def status(self) -> StatusResult | None:
        monitor = self.monitor
        if self._verdict is None and monitor is not None:
            _, sample = monitor.sample()
            self._verdict = judge(sample, self.limits, self.enforce_memory)
            if self._verdict is not None:
                log.warning('%s', self._verdict.reason)
        return self._verdict

    def metrics(self) -> dict[str, float]:
        """Aurora's gauges: {disk,cpu,ram}_{used,reserved,percent} (used is 0 before the first sample)."""
        used = {'disk': 0.0, 'cpu': 0.0, 'ram': 0.0}
        if self.monitor is not None:
            _, sample = self.monitor.sample()
            process = sample.process_sample
            used = {'disk': sample.disk_usage, 'cpu': process.rate, 'ram': process.rss}
        reserved = {'disk': self.limits.disk, 'cpu': self.limits.cpu, 'ram': self.limits.ram}
        result: dict[str, float] = {}
        for kind in ('disk', 'cpu', 'ram'):
            result['%s_used' % kind] = used[kind]
            result['%s_reserved' % kind] = reserved[kind]
            result['%s_percent' % kind] = 100.0 * used[kind] / reserved[kind] if reserved[kind] else 0.0
        return result

    def start(self) -> None:
        if self._make_monitor is None:
            self._start_monitor(self.monitor)
            return
        threading.Thread(target=self._build, name='resource-monitor-start', daemon=True).start()

    def _build(self) -> None:
        assert self._make_monitor is not None
        try:
            monitor = self._make_monitor()
        except Exception as e:  # the task must not run unwatched: fail it with the reason
            log.exception('Could not start resource monitoring')
            self._verdict = StatusResult('Internal error: could not start resource monitoring: %s' % e,
                                         TASK_FAILED)
            return
        self._start_monitor(monitor)

    def _start_monitor(self, monitor: ResourceMonitorBase | None) -> None:
        with self._lock:
            if self._stopped or monitor is None:
                return
            monitor.start()
            self.monitor = monitor

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            monitor = self.monitor
        kill = getattr(monitor, 'kill', None)
        if kill is not None:
            kill()


class ResourceManagerProvider:
    """Builds the task's resource manager, reading the runner checkpoint under `checkpoint_root`."""

    def __init__(self, checkpoint_root: str, enforce_memory: bool = False,
                 process_collection_interval: float = PROCESS_COLLECTION_INTERVAL,
                 disk_collection_interval: float = DISK_COLLECTION_INTERVAL) -> None:
        if process_collection_interval <= 0 or disk_collection_interval <= 0:
            raise ValueError('--process-collection-interval-secs and --disk-collection-interval-secs must '
                             'be positive, got %g and %g' % (process_collection_interval,
                                                            disk_collection_interval))
        self.checkpoint_root = checkpoint_root
        self.enforce_memory = enforce_memory
        self.process_collection_interval = process_collection_interval
        self.disk_collection_interval = disk_collection_interval

    def from_task(self, task: ExecutorTask, sandbox_root: str | None) -> StatusChecker | None:
        if task.resources is None:
            return None
        return ResourceManager(task.resources, enforce_memory=self.enforce_memory,
                               make_monitor=lambda: self._monitor(task.task_id))

    def _monitor(self, task_id: str) -> ResourceMonitorBase:
        from thermos.monitoring.monitor import TaskMonitor
        from thermos.monitoring.resource import TaskResourceMonitor

        return TaskResourceMonitor(
            task_id, TaskMonitor(self.checkpoint_root, task_id),
            process_collection_interval=self.process_collection_interval,
            disk_collection_interval=self.disk_collection_interval,
            # Only the latest sample is judged; a short history keeps the executor small.
            history_time=10 * min(self.process_collection_interval, self.disk_collection_interval))
