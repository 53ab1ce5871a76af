"""Finding the tasks on this host as `LocalTask`s: the impure half of a GC pass.

Liveness is decided by the runner, not by the checkpoint: a task is alive if some process holds
the flock on its runner checkpoint (read from /proc/locks, so probing never takes the lock a
starting runner needs) or if the pid of its last recorded runner is still that runner (start time
and owner verified). Checkpoints are opened from their root without following symlinks, so a
planted link cannot make another task's runner look like this one's.

Cost: a finished task costs a `stat` unless the decision needs more (its last state when the
scheduler thinks it is live, its size for a space budget, its device for disk pressure).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass

import psutil
from thermos.gc.decide import FsUsage, LocalTask
from thermos.gc.safe_delete import BLOCK_SIZE, UnsafePath, is_within, open_below, real_below
from thermos.gc.task_files import SENTINEL, MesosRun, TaskFiles, mesos_run_of

from thermos.common.recordio import RecordIO, ThriftRecordReader
from thermos.gen.thermos.ttypes import RunnerCkpt, TaskStatus
from thermos.monitoring.detector import PathDetector, TaskDetector

log = logging.getLogger(__name__)

_LOCK_ID = re.compile(r"^([0-9a-f]+):([0-9a-f]+):(\d+)$")


def locked_inodes(proc_locks: str = "/proc/locks") -> set[tuple[int, int]]:
    """`(st_dev, st_ino)` of every file somebody holds an flock on (waiters excluded)."""
    held: set[tuple[int, int]] = set()
    try:
        with open(proc_locks) as fp:
            lines = fp.readlines()
    except OSError:
        return held
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->" or fields[1] != "FLOCK":
            continue
        match = _LOCK_ID.match(fields[5])
        if match:
            major, minor, inode = int(match.group(1), 16), int(match.group(2), 16), int(match.group(3))
            held.add((os.makedev(major, minor), inode))
    return held


@dataclass
class _Checkpoint:
    stat: os.stat_result | None
    statuses: list[TaskStatus] | None  # None: unreadable


def _read_runner(files: TaskFiles, want_statuses: bool) -> _Checkpoint:
    """The runner checkpoint's stat and (if asked) its task statuses, opened without following symlinks."""
    try:
        dir_fd = files.metadata_anchors.open_dir(files.checkpoint_dir)
    except (OSError, UnsafePath):
        return _Checkpoint(None, None)
    try:
        fd = os.open("runner", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return _Checkpoint(None, None)
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as fp:
        st = os.fstat(fp.fileno())
        if not want_statuses:
            return _Checkpoint(st, [])
        statuses: list[TaskStatus] = []
        try:
            for record in ThriftRecordReader(fp, RunnerCkpt):
                if record.task_status is not None:
                    statuses.append(record.task_status)
        except (OSError, RecordIO.Error) as err:
            log.info("Unreadable runner checkpoint of %s in %s: %s", files.task_id, files.root, err)
            return _Checkpoint(st, None)
        return _Checkpoint(st, statuses)


def runner_verified(statuses: list[TaskStatus]) -> bool:
    """Whether the runner that wrote the last status still runs (pid, start time and uid checked).

    Its start is the first status it wrote (the ACTIVE it records on taking over the checkpoint),
    not the last one, which may be hours later.
    """
    last = statuses[-1]
    if not last.runner_pid:
        return False
    first = last
    for status in reversed(statuses):
        if status.runner_pid != last.runner_pid:
            break
        first = status
    try:
        process = psutil.Process(last.runner_pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    from thermos.core.helper import TaskRunnerHelper  # only when a runner pid is alive: ~5 MB

    return TaskRunnerHelper.this_is_really_our_pid(process, last.runner_uid, None,
                                                   (first.timestamp_ms or 0) / 1000.0)


def fs_usage(path: str) -> FsUsage | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    disk = 100.0 * (st.f_blocks - st.f_bfree) / st.f_blocks if st.f_blocks else 0.0
    inodes = 100.0 * (st.f_files - st.f_ffree) / st.f_files if st.f_files else 0.0
    return FsUsage(disk, inodes)


class HostScanner:
    """Builds the `LocalTask`s of every checkpoint root a path detector finds."""

    def __init__(self, path_detector: PathDetector | Callable[[], Iterable[str]],
                 sandbox_roots: Iterable[str] | None = None,
                 proc_locks: str = "/proc/locks",
                 alive: Callable[[list[TaskStatus]], bool] = runner_verified) -> None:
        # A detector's list, or a generator of roots (a work_dir of 10,000 runs need not be held).
        self._roots = path_detector.get_paths if isinstance(path_detector, PathDetector) else path_detector
        self._sandbox_roots = tuple(sandbox_roots) if sandbox_roots is not None else None
        self._proc_locks = proc_locks
        self._alive = alive
        self.devices: dict[int, str] = {}  # st_dev -> a path on that filesystem (for statvfs)

    def files(self, root: str, task_id: str, base: tuple[str, int, str] | None = None,
              run: MesosRun | None | bool = True) -> TaskFiles:
        if self._sandbox_roots is None:
            return TaskFiles(root, task_id, base=base, mesos_run=run)
        return TaskFiles(root, task_id, self._sandbox_roots, base=base, mesos_run=run)

    def scan(self, states_for: Container[str] = (), sizes: bool = False,
             devices: bool = False) -> list[LocalTask]:
        """Every task; finished ones in `states_for` also get their last state read."""
        return [task for batch in self.scan_batches(states_for, sizes, devices) for task in batch]

    def scan_batches(self, states_for: Container[str] = (), sizes: bool = False, devices: bool = False,
                     batch: int = 256) -> Iterator[list[LocalTask]]:
        """The same tasks in batches of about `batch`, so that a caller need not hold them all."""
        held = locked_inodes(self._proc_locks)
        executors = _DirCache()
        tasks: list[LocalTask] = []
        try:
            for root in self._roots():
                run = mesos_run_of(root)
                run_finished = None
                base = None
                if run is not None:
                    run_finished = executors.run_finished(run)
                    try:
                        base = executors.open_run(run)
                    except (OSError, UnsafePath) as err:
                        log.warning("Skipping the run %s: %s", run.path, err)
                        continue
                try:
                    tasks.extend(self._root_tasks(root, run, run_finished, base, states_for, held, sizes,
                                                  devices))
                finally:
                    if base is not None:
                        os.close(base[1])
                if len(tasks) >= batch:
                    yield tasks
                    tasks = []
            if tasks:
                yield tasks
        finally:
            executors.close()

    def _root_tasks(self, root: str, run: MesosRun | None, run_finished: bool | None,
                    base: tuple[str, int, str] | None, states_for: Container[str], held: set[tuple[int, int]],
                    sizes: bool, devices: bool) -> list[LocalTask]:
        by_state: dict[str, set[str]] = {"active": set(), "finished": set()}
        for state, task_id in TaskDetector(root).get_task_ids():
            if state in by_state:
                by_state[state].add(task_id)
        tasks = []
        for task_id in sorted(by_state["active"] | by_state["finished"]):
            try:
                files = self.files(root, task_id, base, run)
            except UnsafePath as err:
                log.warning("Skipping %s in %s: %s", task_id, root, err)
                continue
            finished = task_id not in by_state["active"]
            tasks.append(self._task(files, finished, task_id in states_for or not finished, held,
                                    run_finished, run, sizes, devices))
        return tasks

    def _task(self, files: TaskFiles, finished: bool, want_statuses: bool, held: set[tuple[int, int]],
              run_finished: bool | None, run: MesosRun | None, sizes: bool, devices: bool) -> LocalTask:
        ckpt = _read_runner(files, want_statuses)
        statuses = ckpt.statuses
        alive = False
        if ckpt.stat is not None:
            alive = (ckpt.stat.st_dev, ckpt.stat.st_ino) in held
            if not alive and statuses and not finished:
                alive = self._alive(statuses)
        task_state = statuses[-1].state if statuses else None
        started = statuses[0].timestamp_ms / 1000.0 if statuses and statuses[0].timestamp_ms else None
        device = size = None
        if devices or sizes:
            target = files.sandbox or (run.path if run is not None else files.root)
            try:
                device = os.stat(target).st_dev
                self.devices.setdefault(device, target)
            except OSError:
                device = None
            if sizes:
                size = _size(files)
        return LocalTask(files.root, files.task_id, finished=finished, runner_alive=alive,
                         task_state=task_state, started=started,
                         modified=ckpt.stat.st_mtime if ckpt.stat is not None else 0.0,
                         run_finished=run_finished, device=device, size=size)

    def usage(self) -> dict[int, FsUsage]:
        """How full each filesystem holding a scanned sandbox is."""
        result = {}
        for device, path in self.devices.items():
            usage = fs_usage(path)
            if usage is not None:
                result[device] = usage
        return result


def iter_roots(fixed: Iterable[str], work_dirs: Iterable[str], sandbox_path: str = "checkpoints"
               ) -> Iterator[str]:
    """The fixed roots, then every `<run>/checkpoints` under each Mesos work_dir, one at a time.

    The same roots as a ChainedPathDetector of Fixed and Mesos detectors, without building the list
    (and `latest` links skipped, as the agent's layout requires).
    """
    seen = set()
    for root in fixed:
        if root not in seen:
            seen.add(root)
            yield root
    for work_dir in work_dirs:
        for sid in _dirs(os.path.join(work_dir, "slaves")):
            for fid in _dirs(os.path.join(sid, "frameworks")):
                for eid in _dirs(os.path.join(fid, "executors")):
                    for cid in _dirs(os.path.join(eid, "runs")):
                        root = os.path.join(cid, sandbox_path)
                        if os.path.isdir(root):
                            yield root


def _dirs(path: str) -> Iterator[str]:
    """Subdirectories of `path` (not symlinks), in name order, listed lazily enough for large trees."""
    try:
        with os.scandir(path) as it:
            names = sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
    except OSError:
        return
    for name in names:
        yield os.path.join(path, name)


class _DirCache:
    """`<work_dir>/slaves/<sid>/frameworks/<fid>/executors` opened once per scan (there are few)."""

    def __init__(self) -> None:
        self._fds: dict[tuple[str, tuple[str, ...]], int] = {}

    def open_run(self, run: MesosRun) -> tuple[str, int, str]:
        """The run directory as `(path, fd, real path)`, reached without following a symlink."""
        key = (run.work_dir, run.relative[:5])
        if key not in self._fds:
            self._fds[key] = open_below(run.work_dir, run.relative[:5])
        fd = open_below(self._fds[key], run.relative[5:], display=os.path.join(run.work_dir, *key[1]))
        return run.path, fd, real_below(run.work_dir, run.relative)

    def run_finished(self, run: MesosRun) -> bool:
        """Whether the agent wrote the run's `executor.sentinel`.

        The agent's meta tree is root's, never the tasks': only its top is walked without
        symlinks, and the rest is one `stat` (the run's own ids never name `latest`).
        """
        key = (run.work_dir, ("meta", *run.relative[:5]))
        try:
            if key not in self._fds:
                self._fds[key] = open_below(run.work_dir, key[1])
            st = os.stat(os.path.join(*run.relative[5:], SENTINEL), dir_fd=self._fds[key],
                         follow_symlinks=False)
        except (OSError, UnsafePath):
            return False
        return stat.S_ISREG(st.st_mode)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _size(files: TaskFiles) -> int:
    """Allocated bytes under the sandbox (logs included) and the checkpoint directory, no symlink followed."""
    total = 0
    for top in {p for p in (files.sandbox, files.log_dir, files.checkpoint_dir) if p}:
        if files.sandbox and is_within(top, files.sandbox, strict=True):
            continue  # counted with the sandbox
        for directory, dirs, names in os.walk(top):
            for name in dirs + names:
                try:
                    total += os.lstat(os.path.join(directory, name)).st_blocks * BLOCK_SIZE
                except OSError:
                    pass
    return total
