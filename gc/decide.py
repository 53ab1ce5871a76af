"""What to kill, mark LOST, report or delete on one host: the one decision both collectors share.

`decide` is pure: it takes the tasks found on disk (`LocalTask`, with whether each runner is really
alive), the scheduler's retained tasks (None for the watch daemon, which has no scheduler), a
`GcPolicy` and the time, and returns a `Plan`. The GC executor and `thermos gc --watch` carry
plans out; tests check plans on synthetic tasks without a process or a file.

Aurora's reconcile table (spec executor.md §5) with its bugs fixed:
* a task is active only if its runner is alive (lock held or pid verified), not because its
  checkpoint says ACTIVE; a dead runner's task is marked LOST once its checkpoint has been still
  for `orphan_age` (Aurora compared pid *age* with the start time, so no runner ever looked
  healthy);
* a task the scheduler still retains is never deleted, and a Mesos run the agent still runs (no
  `executor.sentinel`) is never touched;
* the watch daemon never kills, never marks LOST and never deletes anything but finished tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from thermos.gc.retained import TERMINAL_STATES as TERMINAL_SCHEDULE
from thermos.gc.retained import ScheduleStatus

from thermos.gen.thermos.ttypes import TaskState

MINIMUM_KILL_AGE = 10 * 60.0  # a task younger than this is never killed (it may not be scheduled yet)
ORPHAN_AGE = 60 * 60.0  # a dead runner's checkpoint must be this still before its task is LOST

_TO_SCHEDULE = {TaskState.ACTIVE: ScheduleStatus.RUNNING, TaskState.CLEANING: ScheduleStatus.RUNNING,
                TaskState.FINALIZING: ScheduleStatus.RUNNING, TaskState.SUCCESS: ScheduleStatus.FINISHED,
                TaskState.FAILED: ScheduleStatus.FAILED, TaskState.KILLED: ScheduleStatus.KILLED,
                TaskState.LOST: ScheduleStatus.LOST}
_TO_MESOS = {TaskState.ACTIVE: "TASK_RUNNING", TaskState.CLEANING: "TASK_RUNNING",
             TaskState.FINALIZING: "TASK_RUNNING", TaskState.SUCCESS: "TASK_FINISHED",
             TaskState.FAILED: "TASK_FAILED", TaskState.KILLED: "TASK_KILLED", TaskState.LOST: "TASK_LOST"}


@dataclass(frozen=True, slots=True)
class LocalTask:
    """A task found in a checkpoint root, as the detector saw it."""

    root: str
    task_id: str
    finished: bool  # the task JSON is under tasks/finished (and not also under tasks/active)
    runner_alive: bool = False  # the checkpoint lock is held or the recorded runner pid verified
    task_state: int | None = None  # the last TaskState in the runner checkpoint, None if unread
    started: float | None = None  # the first TaskStatus time (s), None if unread
    modified: float = 0.0  # the runner checkpoint's mtime (0 if missing)
    run_finished: bool | None = None  # Mesos run: executor.sentinel present; None outside Mesos
    device: int | None = None  # st_dev of the sandbox's filesystem, for disk-pressure triggers
    size: int | None = None  # bytes the task occupies, for a space budget

    @property
    def key(self) -> tuple[str, str]:
        return self.root, self.task_id


@dataclass(frozen=True)
class GcPolicy:
    """Limits (None: no limit). Ages in seconds, sizes in bytes, thresholds in percent."""

    minimum_kill_age: float = MINIMUM_KILL_AGE
    orphan_age: float = ORPHAN_AGE
    max_age: float | None = None
    max_space: int | None = None
    max_tasks: int | None = None  # finished tasks kept (the newest)
    max_terminal_tasks: int | None = None  # trigger: more finished tasks than this
    disk_high: float | None = None  # trigger: a sandbox filesystem more than this % full
    disk_low: float | None = None  # then collect until under this % (default: disk_high)
    inode_high: float | None = None
    inode_low: float | None = None


@dataclass(frozen=True)
class FsUsage:
    """How full one filesystem is, in percent of blocks and of inodes."""

    disk_percent: float
    inode_percent: float


@dataclass(frozen=True)
class Update:
    """A status update for the scheduler: `TASK_*` state, Aurora ScheduleStatus, message."""

    task_id: str
    mesos_state: str
    schedule_status: int | None
    message: str


@dataclass
class Plan:
    kill: list[LocalTask] = field(default_factory=list)
    lose: list[LocalTask] = field(default_factory=list)  # dead runner: write LOST into the checkpoint
    delete: list[LocalTask] = field(default_factory=list)  # oldest first
    pressure: list[LocalTask] = field(default_factory=list)  # oldest first; delete while still under pressure
    updates: list[Update] = field(default_factory=list)
    skipped: list[tuple[LocalTask, str]] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)  # why the watch daemon collects now

    def summary(self) -> str:
        return "kill %d, lose %d, delete %d (+%d under pressure), updates %d, skipped %d" % (
            len(self.kill), len(self.lose), len(self.delete), len(self.pressure), len(self.updates),
            len(self.skipped))


def schedule_status(task_state: int | None) -> int:
    return _TO_SCHEDULE.get(task_state, ScheduleStatus.LOST)  # type: ignore[arg-type]


def mesos_state(task_state: int | None) -> str:
    return _TO_MESOS.get(task_state, "TASK_LOST")  # type: ignore[arg-type]


def _age(task: LocalTask, now: float) -> float:
    return now - task.modified


def decide(tasks: Iterable[LocalTask], retained: Mapping[str, int] | None, policy: GcPolicy, now: float,
           usage: Mapping[int, FsUsage] | None = None, report_absent: bool = True) -> Plan:
    """The plan for one pass. `retained` maps task id -> ScheduleStatus; None means no scheduler.

    With a scheduler every task is decided on its own, so the tasks may come in batches
    (`report_absent=False`, then `absent_updates` with every id seen); the watch policies
    (count, space, pressure) need them all at once.
    """
    plan = Plan()
    local = sorted(tasks, key=lambda t: (t.modified, t.root, t.task_id))  # oldest first
    finished: list[LocalTask] = []
    for task in local:
        if not task.finished:
            _decide_unfinished(task, retained, policy, now, plan)
        elif task.run_finished is False:
            plan.skipped.append((task, "its Mesos executor run has no executor.sentinel yet"))
        elif task.runner_alive:
            plan.skipped.append((task, "finished, but a runner still holds its checkpoint"))
        else:
            finished.append(task)

    if retained is not None:
        for task in finished:
            _decide_finished(task, retained, policy, now, plan)
        if report_absent:
            plan.updates.extend(absent_updates({task.task_id for task in local}, retained))
    else:
        _decide_watch(finished, policy, now, usage or {}, plan)
    return plan


def absent_updates(seen: set[str], retained: Mapping[str, int]) -> list[Update]:
    """TASK_LOST for each task the scheduler thinks is live that left no trace here."""
    return [Update(task_id, "TASK_LOST", ScheduleStatus.LOST, "GC executor found no trace of task.")
            for task_id, status in sorted(retained.items())
            if task_id not in seen and status not in TERMINAL_SCHEDULE and status != ScheduleStatus.ASSIGNED]


def decide_orphans(tasks: Iterable[LocalTask], retained: Mapping[str, int] | None, policy: GcPolicy,
                   now: float) -> Plan:
    """Only the dead runners (Aurora's `clean_orphans`, run between GC tasks): lose them and say so.

    With no scheduler view at hand each one gets its TASK_LOST (the scheduler may still think it
    runs); with the last retained map, only those the scheduler thought live do.
    """
    plan = Plan()
    for task in sorted(tasks, key=lambda t: (t.modified, t.root, t.task_id)):
        if task.finished or task.runner_alive or _age(task, now) <= policy.orphan_age:
            continue
        plan.lose.append(task)
        wanted = retained.get(task.task_id) if retained is not None else ScheduleStatus.RUNNING
        if wanted is not None and wanted not in TERMINAL_SCHEDULE:
            plan.updates.append(Update(task.task_id, "TASK_LOST", ScheduleStatus.LOST,
                                       "GC executor detected failed task runner."))
    return plan


def _decide_unfinished(task: LocalTask, retained: Mapping[str, int] | None, policy: GcPolicy, now: float,
                       plan: Plan) -> None:
    wanted = retained.get(task.task_id) if retained is not None else None
    if task.runner_alive:
        if retained is None or (wanted is not None and wanted not in TERMINAL_SCHEDULE):
            return  # live and wanted (or nobody to ask): never touched
        if task.started is None or now - task.started <= policy.minimum_kill_age:
            plan.skipped.append((task, "running for less than the minimum kill age"))
        else:
            plan.kill.append(task)
        return
    # The checkpoint says ACTIVE but no runner holds it.
    if _age(task, now) <= policy.orphan_age:
        plan.skipped.append((task, "runner not running, but its checkpoint changed %.0f s ago" % (
            _age(task, now))))
    elif retained is None:
        plan.skipped.append((task, "runner not running; 'thermos kill %s' marks it LOST" % task.task_id))
    else:
        plan.lose.append(task)
        if wanted is not None and wanted not in TERMINAL_SCHEDULE:
            plan.updates.append(Update(task.task_id, "TASK_LOST", ScheduleStatus.LOST,
                                       "GC executor detected failed task runner."))


def _decide_finished(task: LocalTask, retained: Mapping[str, int], policy: GcPolicy, now: float,
                     plan: Plan) -> None:
    wanted = retained.get(task.task_id)
    if wanted is None:
        plan.delete.append(task)
    elif wanted in TERMINAL_SCHEDULE:
        return
    elif task.task_state is not None:
        plan.updates.append(Update(task.task_id, mesos_state(task.task_state),
                                   schedule_status(task.task_state), "Task finish detected by GC executor."))
    elif _age(task, now) > policy.minimum_kill_age:
        plan.delete.append(task)  # an unreadable checkpoint, long untouched: nothing left to report
    else:
        plan.skipped.append((task, "unreadable checkpoint, changed recently"))


def _decide_watch(finished: list[LocalTask], policy: GcPolicy, now: float, usage: Mapping[int, FsUsage],
                  plan: Plan) -> None:
    chosen = select_by_policy(finished, policy, now)
    if chosen:
        plan.triggers.append("policy selects %d task(s)" % len(chosen))
    if policy.max_terminal_tasks is not None and len(finished) > policy.max_terminal_tasks:
        plan.triggers.append("%d finished tasks > %d" % (len(finished), policy.max_terminal_tasks))
        excess = len(finished) - policy.max_terminal_tasks
        chosen.update(task.key for task in finished[:excess])
    plan.delete.extend(task for task in finished if task.key in chosen)

    pressed = pressured_devices(usage, policy, plan.triggers)
    plan.pressure.extend(task for task in finished if task.key not in chosen and task.device in pressed)


def pressured_devices(usage: Mapping[int, FsUsage], policy: GcPolicy,
                      reasons: list[str] | None = None) -> set[int]:
    """Filesystems above a high-water mark."""
    pressed = set()
    for device, fs in sorted(usage.items()):
        for name, value, high in (("disk", fs.disk_percent, policy.disk_high),
                                  ("inode", fs.inode_percent, policy.inode_high)):
            if high is not None and value > high:
                pressed.add(device)
                if reasons is not None:
                    reasons.append("%s usage %.1f%% > %g%% on device %d" % (name, value, high, device))
    return pressed


def relieved(fs: FsUsage, policy: GcPolicy) -> bool:
    """Whether a filesystem is back under both low-water marks (the high marks when no low is set)."""
    for value, high, low in ((fs.disk_percent, policy.disk_high, policy.disk_low),
                             (fs.inode_percent, policy.inode_high, policy.inode_low)):
        mark = low if low is not None else high
        if mark is not None and value > mark:
            return False
    return True


def select_by_policy(finished: list[LocalTask], policy: GcPolicy, now: float) -> set[tuple[str, str]]:
    """The landed age / space / count policy (monitoring.garbage) on detected tasks, oldest-first input."""
    selected: set[tuple[str, str]] = set()
    if policy.max_age is not None:
        selected.update(task.key for task in finished if _age(task, now) > policy.max_age)
    newest_first = list(reversed(finished))
    if policy.max_space is not None:
        used = 0
        for task in newest_first:
            if task.key in selected:
                continue
            used += task.size or 0
            if used > policy.max_space:
                selected.add(task.key)
    if policy.max_tasks is not None:
        kept = [task for task in newest_first if task.key not in selected]
        selected.update(task.key for task in kept[policy.max_tasks:])
    return selected
