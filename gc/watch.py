"""`thermos gc --watch`: an agent-local collector for hosts where no scheduler sends GC tasks.

Chosen as a mode of `thermos gc` rather than a separate `thermos_gc` binary: it is the same
operation on the same roots with the same policy flags, and operators already know the command.

Every `interval` it scans the checkpoint roots and collects finished tasks when a trigger fires,
the way Nomad's client GC and the kubelet's image GC do:
* the landed policy (`--max_age`, `--max_space`, `--max_tasks`) selects tasks;
* more than `--max-terminal-tasks` finished tasks: the oldest beyond it;
* a sandbox filesystem above `--disk-high` % of its blocks or `--inode-high` % of its inodes: the
  oldest finished tasks on that filesystem, one at a time, re-measuring after each, until it is
  back under `--disk-low` / `--inode-low` (the high mark when no low one is given).
Oldest first (runner checkpoint mtime). Active tasks, tasks whose runner still holds the lock and
Mesos runs without `executor.sentinel` are never touched; nothing is followed through a symlink
(`latest` included). One log line per task collected, with the bytes freed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from thermos.gc.decide import GcPolicy, LocalTask, decide, pressured_devices, relieved
from thermos.gc.detect import HostScanner, fs_usage
from thermos.gc.reclaim import Outcome, collect_task
from thermos.gc.safe_delete import format_bytes


@dataclass
class PassReport:
    collected: list[Outcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(o.freed.bytes for o in self.collected if o.freed is not None)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.collected if not o.done)


class Watcher:
    def __init__(self, scanner: HostScanner, policy: GcPolicy, dry_run: bool = False,
                 logger: Callable[[str], object] = print, clock: Callable[[], float] = time.time,
                 sandbox_roots: Sequence[str] | None = None) -> None:
        self._scanner = scanner
        self._policy = policy
        self._dry_run = dry_run
        self._log = logger
        self._clock = clock
        self._sandbox_roots = sandbox_roots

    def run_once(self) -> PassReport:
        policy = self._policy
        pressure = policy.disk_high is not None or policy.inode_high is not None
        tasks = self._scanner.scan(sizes=policy.max_space is not None, devices=pressure)
        usage = self._scanner.usage() if pressure else {}
        plan = decide(tasks, None, policy, self._clock(), usage)
        report = PassReport(triggers=list(plan.triggers))
        for reason in plan.triggers:
            self._log("trigger: %s" % reason)
        for task, why in plan.skipped:
            report.skipped.append("%s in %s: %s" % (task.task_id, task.root, why))
            self._log("skip: %s" % report.skipped[-1])
        for task in plan.delete:
            self._collect(task, "policy", report)
        pressed = pressured_devices(usage, policy)
        for task in plan.pressure:
            if task.device not in pressed:
                continue
            current = fs_usage(self._scanner.devices[task.device]) if task.device in self._scanner.devices \
                else None
            if current is not None and relieved(current, policy) and not self._dry_run:
                pressed.discard(task.device)
                self._log("pressure relieved on device %d: disk %.1f%%, inodes %.1f%%" % (
                    task.device, current.disk_percent, current.inode_percent))
                continue
            self._collect(task, "pressure", report)
        if not report.collected:
            self._log("nothing to collect (%d tasks seen)" % len(tasks))
        elif not self._dry_run:
            self._log("pass done: collected %d task(s), freed %s" % (
                sum(1 for o in report.collected if o.done), format_bytes(report.freed)))
        return report

    def _collect(self, task: LocalTask, why: str, report: PassReport) -> None:
        if self._dry_run:
            outcome = Outcome(task, True, "would collect %s in %s (%s)" % (task.task_id, task.root, why))
        else:
            outcome = collect_task(task, self._sandbox_roots, why)
        report.collected.append(outcome)
        self._log(outcome.line)

    def run(self, interval: float, stop: threading.Event, passes: int | None = None) -> int:
        """Pass after pass until `stop` is set (or `passes` were made); the number of failed collections."""
        failed = done = 0
        while not stop.is_set():
            failed += self.run_once().failed
            done += 1
            if passes is not None and done >= passes:
                break
            stop.wait(interval)
        return failed
