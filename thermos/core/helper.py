"""TaskRunnerHelper: finding, verifying and signalling a task's processes, and its task records.

Every pid read from a checkpoint is verified against its recorded start time and owner before it
is signalled, so a recycled pid is never hit. Kills go to whole process groups and trees: the
coordinator's group (it called setsid), the user process and everything below it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import logging
import os
import pwd
import signal
import time
from collections.abc import Callable
from typing import IO, Any

import psutil

from thermos.common import safe_fs
from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.path import CHECKPOINT_DIR_MODE, CHECKPOINT_FILE_MODE, TaskPath
from thermos.common.recordio import ThriftRecordWriter, trim_torn_tail
from thermos.core import containment
from thermos.gen.thermos.ttypes import (
    ProcessState,
    ProcessStatus,
    RunnerCkpt,
    RunnerState,
    TaskState,
    TaskStatus,
)

log = logging.getLogger(__name__)



def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False

TERMINAL_PROCESS = frozenset((ProcessState.SUCCESS, ProcessState.KILLED, ProcessState.FAILED,
                              ProcessState.LOST))
TERMINAL_TASK = frozenset((TaskState.SUCCESS, TaskState.FAILED, TaskState.KILLED, TaskState.LOST))


def safe_signal(pid: int, sig: int) -> None:
    """Signal a pid or (negative) process group; already-gone and not-ours are not errors."""
    try:
        os.kill(pid, sig)
    except OSError as err:
        if err.errno not in (errno.ESRCH, errno.EPERM):
            raise


class TaskRunnerHelper:
    """Stateless helpers shared by the runner, the CLI's kill and the executor's last resort."""

    class Error(Exception):
        pass

    class PermissionError(Error):
        pass

    MAX_START_TIME_DRIFT = 10.0  # seconds between a recorded start time and psutil's create_time

    # ---- identity ------------------------------------------------------------------------

    @staticmethod
    def get_actual_user() -> str:
        try:
            return pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            return getpass.getuser()

    @classmethod
    def this_is_really_our_pid(cls, process: psutil.Process, uid: int | None, user: str | None,
                               start_time: float) -> bool:
        """Whether `process` is the one we recorded, and not a stranger that reused its pid."""
        try:
            if abs(start_time - process.create_time()) >= cls.MAX_START_TIME_DRIFT:
                return False
        except psutil.Error:
            return False
        if uid is not None:
            try:
                uids = process.uids()
            except psutil.Error:
                return False
            if uids is None:
                return False
            # a process started by root may have dropped to the task user (setuid) on purpose
            return uids.real == uid or uid == 0
        try:
            return process.username() == user
        except (KeyError, psutil.Error):
            return False

    @staticmethod
    def _live(process: psutil.Process) -> bool:
        """A zombie has exited already: signalling or waiting for it is pointless."""
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    @classmethod
    def scan_process(cls, state: RunnerState, process_name: str
                     ) -> tuple[psutil.Process | None, psutil.Process | None, set[psutil.Process]]:
        """(coordinator, user process, user process's descendants) of the latest run, verified."""
        runs = state.processes.get(process_name) if state.processes else None
        if not runs:
            return None, None, set()
        run = runs[-1]
        header = state.header
        uid = header.uid if header is not None else None
        user = header.user if header is not None else None
        coordinator = process = None
        children: set[psutil.Process] = set()
        if run.coordinator_pid:
            try:
                candidate = psutil.Process(run.coordinator_pid)
                if cls.this_is_really_our_pid(candidate, uid, user, run.fork_time or 0.0) \
                        and cls._live(candidate):
                    coordinator = candidate
            except psutil.Error:
                pass
        if run.pid:
            try:
                candidate = psutil.Process(run.pid)
                if cls.this_is_really_our_pid(candidate, uid, user, run.start_time or 0.0):
                    if cls._live(candidate):
                        process = candidate
                    children = {child for child in candidate.children(recursive=True) if cls._live(child)}
            except psutil.Error:
                pass
        return coordinator, process, children

    @classmethod
    def scan_tree(cls, state: RunnerState) -> dict[str, tuple[Any, Any, set[psutil.Process]]]:
        return {name: cls.scan_process(state, name) for name in (state.processes or {})}

    # ---- signals -------------------------------------------------------------------------

    @staticmethod
    def terminate_pid(pid: int) -> None:
        safe_signal(pid, signal.SIGTERM)

    @staticmethod
    def kill_pid(pid: int) -> None:
        safe_signal(pid, signal.SIGKILL)

    @staticmethod
    def kill_group(pgid: int) -> None:
        if pgid > 1:
            safe_signal(-pgid, signal.SIGKILL)

    @classmethod
    def terminate_orphans(cls, state: RunnerState) -> None:
        """SIGTERM our direct children that are not live coordinators: reparented daemons."""
        coordinators = set()
        for runs in (state.processes or {}).values():
            if runs and runs[-1].state not in TERMINAL_PROCESS and runs[-1].coordinator_pid:
                coordinators.add(runs[-1].coordinator_pid)
        try:
            children = psutil.Process().children()
        except psutil.Error:
            return
        for child in children:
            if child.pid not in coordinators:
                log.info("Terminating orphan %d", child.pid)
                cls.terminate_pid(child.pid)

    @classmethod
    def terminate_process(cls, state: RunnerState, process_name: str) -> bool:
        """SIGTERM every process of the run, not only its shell (systemd's control-group mode).

        Aurora signalled the `bash -c` alone: bash died and a server it had started never saw
        SIGTERM before the SIGKILL. The run's process group (led by its coordinator, which ignores
        SIGTERM) and every descendant of the user process get it.
        """
        coordinator, process, children = cls.scan_process(state, process_name)
        if process is None:
            return False
        log.info("Sending SIGTERM to %s (pid %d and %d descendants)", process_name, process.pid,
                 len(children))
        group = coordinator.pid if coordinator is not None else None
        if group is not None:
            safe_signal(-group, signal.SIGTERM)
        for proc in (process, *children):  # each exactly once: those outside the group by pid
            try:
                if group is not None and os.getpgid(proc.pid) == group:
                    continue
            except OSError:
                continue
            cls.terminate_pid(proc.pid)
        return True

    @classmethod
    def kill_process(cls, state: RunnerState, process_name: str, wait: float = 0.0) -> bool:
        """SIGKILL everything of the latest run; True if any verified pid was still there.

        With `wait`, also wait (bounded) until they are gone: the next run of the process needs
        the coordinator checkpoint lock that the old coordinator holds until it has exited.
        """
        runs = state.processes.get(process_name) if state.processes else None
        if not runs:
            return False
        coordinator, process, children = cls.scan_process(state, process_name)
        if runs[-1].coordinator_pid:
            cls.kill_group(runs[-1].coordinator_pid)
        victims = [proc for proc in (coordinator, process, *children) if proc is not None]
        for proc in victims:
            cls.kill_pid(proc.pid)
        if victims and wait > 0:
            _, still_alive = psutil.wait_procs(victims, timeout=wait)
            for proc in still_alive:
                log.warning("pid %d of %s survived SIGKILL for %.1fs", proc.pid, process_name, wait)
        return bool(victims)

    @staticmethod
    def kill_descendants(exclude: set[int] | None = None) -> list[int]:
        """SIGKILL every descendant of this process (a subreaper adopts escaped daemons)."""
        try:
            descendants = psutil.Process().children(recursive=True)
        except psutil.Error:
            return []
        killed = []
        for proc in descendants:
            if exclude and proc.pid in exclude:
                continue
            safe_signal(proc.pid, signal.SIGKILL)
            killed.append(proc.pid)
        return killed

    @classmethod
    def kill_runner(cls, state: RunnerState | None) -> bool:
        """SIGKILL the runner that last took control of the task; True if it is gone."""
        if state is None or not state.statuses:
            raise cls.Error("Could not read the task's runner status.")
        runner_pid = state.statuses[-1].runner_pid
        if runner_pid == os.getpid():
            raise cls.Error("Unwilling to commit seppuku.")
        try:
            os.kill(runner_pid, signal.SIGKILL)
            return True
        except OSError as err:
            if err.errno == errno.EPERM:
                return False
            if err.errno == errno.ESRCH:
                return True
            raise

    # ---- the checkpoint lock -------------------------------------------------------------

    @staticmethod
    def lock_file(filename: str, blocking: bool = False, dir_fd: int | None = None) -> IO[bytes] | None:
        """Open and flock a checkpoint; None if another process holds the lock.

        The file is reached from its directory without following symlinks (`safe_fs`), created
        0600, and refused if it is not a single-link file of ours: a planted link cannot make
        root append to another file. `dir_fd` is the checkpoint directory, when already open.
        """
        own_dir = dir_fd is None
        if own_dir:
            dir_fd = safe_fs.open_dir(os.path.dirname(filename), create_mode=CHECKPOINT_DIR_MODE)
        try:
            fd, _ = safe_fs.open_file_at(dir_fd, os.path.basename(filename),
                                         os.O_RDWR | os.O_APPEND | os.O_CREAT, CHECKPOINT_FILE_MODE)
        finally:
            if own_dir:
                os.close(dir_fd)
        fp = os.fdopen(fd, "a+b")
        try:
            fcntl.flock(fp.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as err:
            fp.close()
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return None
            raise
        cut = trim_torn_tail(fp.fileno(), RunnerCkpt)  # a dead writer's half frame
        if cut:
            log.warning("Cut a torn %d-byte tail off %s before appending", cut, filename)
        return fp

    @classmethod
    def open_checkpoint(cls, filename: str, force: bool = False, state: RunnerState | None = None,
                        lock_wait: float = 30.0, dir_fd: int | None = None) -> ThriftRecordWriter[RunnerCkpt]:
        """Take the task's checkpoint lock (killing the holder with force) and return a writer."""
        fp = cls.lock_file(filename, dir_fd=dir_fd)
        if fp is None and force:
            log.info("Found existing runner, forcing leadership forfeit.")
            state = state or CheckpointDispatcher.from_file(filename)
            if cls.kill_runner(state):
                fp = cls._wait_for_lock(filename, lock_wait, dir_fd)
        if fp is None:
            raise cls.PermissionError("Could not take the checkpoint lock on %s: another runner holds it"
                                      % filename)
        writer: ThriftRecordWriter[RunnerCkpt] = ThriftRecordWriter(fp)
        writer.set_sync(True)
        return writer

    @classmethod
    def _wait_for_lock(cls, filename: str, timeout: float, dir_fd: int | None = None) -> IO[bytes] | None:
        """Poll for the lock a SIGKILLed holder releases as it dies; bounded, unlike Aurora's."""
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            fp = cls.lock_file(filename, dir_fd=dir_fd)
            if fp is not None or time.monotonic() >= deadline:
                return fp
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    # ---- task records --------------------------------------------------------------------

    @staticmethod
    def is_process_terminal(process_status: int | None) -> bool:
        return process_status in TERMINAL_PROCESS

    @staticmethod
    def is_task_terminal(task_status: int | None) -> bool:
        return task_status in TERMINAL_TASK

    @staticmethod
    def initialize_task(spec: TaskPath, task_json: str) -> None:
        """Write tasks/active/<id> (0600: configs carry secrets) unless a record exists already."""
        active = spec.given(state="active").getpath("task_path")
        finished = spec.given(state="finished").getpath("task_path")
        if os.path.exists(finished):
            raise TaskRunnerHelper.Error("Cannot initialize task with finished record %s" % finished)
        dir_fd = safe_fs.open_dir(os.path.dirname(active), create_mode=CHECKPOINT_DIR_MODE)
        try:
            name = os.path.basename(active)
            if _exists_at(dir_fd, name):
                return
            tmp = "%s.tmp.%d" % (name, os.getpid())
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            fd, _ = safe_fs.open_file_at(dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                         CHECKPOINT_FILE_MODE)
            with os.fdopen(fd, "w") as fp:
                fp.write(task_json)
                fp.flush()
                os.fsync(fp.fileno())
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    @staticmethod
    def finalize_task(spec: TaskPath) -> None:
        """Move the task record from tasks/active to tasks/finished, both reached safely."""
        active = spec.given(state="active").getpath("task_path")
        finished = spec.given(state="finished").getpath("task_path")
        name = os.path.basename(active)
        src = safe_fs.open_dir(os.path.dirname(active), create_mode=CHECKPOINT_DIR_MODE)
        try:
            if not _exists_at(src, name):
                raise TaskRunnerHelper.Error("Cannot finalize task with no active record %s" % active)
            dst = safe_fs.open_dir(os.path.dirname(finished), create_mode=CHECKPOINT_DIR_MODE)
            try:
                if _exists_at(dst, name):
                    raise TaskRunnerHelper.Error("Cannot finalize task with existing finished record %s"
                                                 % finished)
                os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
                os.utime(name, None, dir_fd=dst, follow_symlinks=False)
            finally:
                os.close(dst)
        finally:
            os.close(src)

    @staticmethod
    def reap_children() -> set[int]:
        reaped = set()
        while True:
            try:
                pid, _, _ = os.wait3(os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped.add(pid)
        return reaped

    # ---- the standalone kill (used by `thermos kill` and the executor's last resort) ------

    @classmethod
    def kill(cls, task_id: str, checkpoint_root: str, force: bool = False,
             terminal_status: int = TaskState.KILLED, clock: Callable[[], float] = time.time) -> None:
        """Kill a task whose runner may be gone, recording the outcome in its checkpoint."""
        if terminal_status not in (TaskState.KILLED, TaskState.LOST):
            raise cls.Error("terminal_status must be KILLED or LOST (got %s)" % (
                TaskState._VALUES_TO_NAMES.get(terminal_status, terminal_status)))
        pathspec = TaskPath(root=checkpoint_root, task_id=task_id)
        checkpoint = pathspec.getpath("runner_checkpoint")
        state = CheckpointDispatcher.from_file(checkpoint)
        if state is None or state.header is None or not state.statuses:
            log.error("Cannot update states in uninitialized checkpoint %s", checkpoint)
            if force and os.path.exists(pathspec.given(state="active").getpath("task_path")):
                cls.finalize_task(pathspec)
            return
        writer = cls.open_checkpoint(checkpoint, force=True, state=state)
        try:
            if cls.is_task_terminal(state.statuses[-1].state):
                log.info("Task %s is already terminal", task_id)
                cls._kill_contained(checkpoint_root, task_id, state)
                cls._finalize_if_active(pathspec)
                return

            def write_task(task_state: int) -> None:
                writer.write(RunnerCkpt(task_status=TaskStatus(
                    state=task_state, timestamp_ms=int(clock() * 1000), runner_pid=os.getpid(),
                    runner_uid=os.getuid())))

            write_task(TaskState.ACTIVE)
            for name, runs in sorted((state.processes or {}).items()):
                run = runs[-1]
                if cls.is_process_terminal(run.state):
                    continue
                if cls.kill_process(state, name):
                    update = ProcessStatus(process=name, seq=run.seq + 1, state=ProcessState.KILLED,
                                           return_code=-9, stop_time=clock())
                elif run.state != ProcessState.WAITING:
                    update = ProcessStatus(process=name, seq=run.seq + 1, state=ProcessState.LOST)
                else:
                    continue
                writer.write(RunnerCkpt(process_status=update))
            write_task(terminal_status)
        finally:
            writer.close()
        cls._kill_contained(checkpoint_root, task_id, state)
        cls._finalize_if_active(pathspec)

    @staticmethod
    def _kill_contained(checkpoint_root: str, task_id: str, state: RunnerState) -> None:
        """What no tree walk finds: setsid() daemons orphaned by a dead runner (cgroup or marker)."""
        for pid in containment.kill_task(checkpoint_root, task_id, state, exclude={os.getpid()}):
            log.info("Killed leftover %d of task %s", pid, task_id)

    @classmethod
    def _finalize_if_active(cls, pathspec: TaskPath) -> None:
        if os.path.exists(pathspec.given(state="active").getpath("task_path")):
            cls.finalize_task(pathspec)
