"""Resource limits: fail a task that outgrows its reservation (spec §1.10).

`ResourceManager` samples the task with the landed monitor (`TaskResourceMonitor` reading the
runner checkpoint: the RUNNING processes' trees, and the sandbox named in the header) and reports
TASK_FAILED when the sandbox holds more bytes than ``resources.disk``, with Aurora's message
``Disk limit exceeded.  Reserved <limit> bytes vs used <used> bytes.`` (two spaces, as Aurora).

Memory is only a metric in Aurora, because Mesos' cgroups normally enforce it. With
``enforce_memory`` (an executor flag for hosts without that isolation) the summed RSS of the
task's process trees above ``resources.ram`` is a TASK_FAILED too:
``Memory limit exceeded.  Reserved <limit> bytes vs used <used> bytes.``
"""

from __future__ import annotations

import logging

from thermos.executor.checkers.base import TASK_FAILED, StatusChecker, StatusResult
from thermos.executor.task_info import ExecutorTask, TaskResources

from thermos.monitoring.monitor import TaskMonitor
from thermos.monitoring.resource import AggregateResourceResult, ResourceMonitorBase, TaskResourceMonitor

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
    """Watches one task's disk (and optionally memory) against its reservation."""

    def __init__(self, limits: TaskResources, monitor: ResourceMonitorBase,
                 enforce_memory: bool = False) -> None:
        self.limits = limits
        self.monitor = monitor
        self.enforce_memory = enforce_memory
        self._verdict: StatusResult | None = None

    @property
    def name(self) -> str:
        return 'resource_manager'

    @property
    def status(self) -> StatusResult | None:
        if self._verdict is None:
            _, sample = self.monitor.sample()
            self._verdict = judge(sample, self.limits, self.enforce_memory)
            if self._verdict is not None:
                log.warning('%s', self._verdict.reason)
        return self._verdict

    def metrics(self) -> dict[str, float]:
        """Aurora's gauges: {disk,cpu,ram}_{used,reserved,percent}."""
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
        self.monitor.start()

    def stop(self) -> None:
        kill = getattr(self.monitor, 'kill', None)
        if kill is not None:
            kill()


class ResourceManagerProvider:
    """Builds the task's resource manager, reading the runner checkpoint under `checkpoint_root`."""

    def __init__(self, checkpoint_root: str, enforce_memory: bool = False,
                 process_collection_interval: float = PROCESS_COLLECTION_INTERVAL,
                 disk_collection_interval: float = DISK_COLLECTION_INTERVAL) -> None:
        self.checkpoint_root = checkpoint_root
        self.enforce_memory = enforce_memory
        self.process_collection_interval = process_collection_interval
        self.disk_collection_interval = disk_collection_interval

    def from_task(self, task: ExecutorTask, sandbox_root: str | None) -> StatusChecker | None:
        if task.resources is None:
            return None
        monitor = TaskResourceMonitor(
            task.task_id, TaskMonitor(self.checkpoint_root, task.task_id),
            process_collection_interval=self.process_collection_interval,
            disk_collection_interval=self.disk_collection_interval,
            # Only the latest sample is judged; a short history keeps the executor small.
            history_time=10 * min(self.process_collection_interval, self.disk_collection_interval))
        return ResourceManager(task.resources, monitor, enforce_memory=self.enforce_memory)
