"""The coordinator: one small forked process per process run (spec §6).

The runner forks a coordinator for every run of a process. The coordinator starts `bash -c
<cmdline>`, records RUNNING and then the exit in its own checkpoint, and exits. It exists so that an
exit is recorded even while the runner is dead; the runner later reads what happened from the file.

Protocol (runner side in `start()`, coordinator side in `_coordinate()`):
1. The runner takes an exclusive flock on `coordinator.<process>`, forks, and appends
   FORKED(seq, fork_time, coordinator_pid) with fsync. The child keeps the locked descriptor, so
   the lock lives exactly as long as the coordinator.
2. The coordinator waits for that record: the runner wakes it through a pipe once the record is
   durable. If the pipe closes without that (the runner died around the fork) or stays silent for
   MAXIMUM_CONTROL_WAIT, the coordinator looks for the record in the file and gives up without it.
3. It spawns the user process, appends RUNNING, waits, appends SUCCESS/FAILED/KILLED and `_exit(0)`s
   without ever returning into the runner's code.

Staying cheap: a coordinator shares the runner's memory copy-on-write, so every page either of
them writes after the fork becomes the coordinator's own. So the runner resolves everything (user,
groups, environment, argv) before forking; the GC is frozen in the runner and off in the child, so
no collection writes to shared objects; the child imports nothing, closes the runner's descriptors
and starts the user process with posix_spawn (no copy of the page tables).

Differences from Aurora, all deliberate:
* A failure between taking control and spawning (chroot without bash, setuid refused, missing
  MESOS_DIRECTORY) is recorded as RUNNING + FAILED (126/127, like a shell) rather than leaving the
  run to be declared LOST after a minute and retried forever.
* The user process starts with default signal dispositions and an empty signal mask.
* Supplementary groups come from getgrouplist(3) (the primary group included, as login does).
* The containerizer is told the resolved user name rather than the literal "None" when no user
  was given.
"""

from __future__ import annotations

import _signal  # signal's C layer: no enum conversions, so the child runs (and dirties) less
import errno
import fcntl
import gc
import io
import json
import os
import pwd
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import IO, NamedTuple, NoReturn, Protocol

from thermos.common import safe_fs
from thermos.common.path import TaskPath
from thermos.common.recordio import RecordIO, ThriftRecordReader, ThriftRecordWriter
from thermos.core.containment import MARKER_ENV
from thermos.core.helper import TaskRunnerHelper
from thermos.core.process_logging import (
    READ_BUFFER_SIZE,
    Handler,
    LogDestinationResolver,
    LoggerDestination,
    LoggerMode,
    RotatingFileHandler,
    StreamHandler,
    TeeHandler,
    pump,
)
from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt

# Aurora's names, importable from here as they were from apache.thermos.core.process.
__all__ = ["LogDestinationResolver", "LoggerDestination", "LoggerMode", "Platform", "Process", "RealPlatform",
           "RotatingFileHandler", "StreamHandler", "TeeHandler"]

TASK_FILESYSTEM_MOUNT_POINT = "taskfs"
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
TASK_UMASK = 0o022
# What a task's processes find on PATH: a login's standard one, never the (root) runner's own.
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOG_DIR_MODE = 0o755
_CONTROL_OK = b"\x01"  # sent by the runner once FORKED is durable
_SPAWN_SIGDEF = tuple(s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP))


# --- side effects, one small function each so tests can replace them -------------------------

def current_euid() -> int:
    return os.geteuid()


def drop_privileges(uid: int, gid: int, groups: list[int]) -> None:
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def enter_chroot(path: str) -> None:
    os.chdir(path)
    os.chroot(path)


def spawn(argv: list[str], env: dict[str, str], cwd: str, stdout_fd: int, stderr_fd: int) -> int:
    """Start argv with the given stdout/stderr; the (Python) coordinator itself is not forked."""
    os.chdir(cwd)
    actions = []
    for src, dst in ((stdout_fd, 1), (stderr_fd, 2)):
        if src == dst:
            os.set_inheritable(dst, True)
        else:
            actions.append((os.POSIX_SPAWN_DUP2, src, dst))
    return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsigmask=(),
                          setsigdef=_SPAWN_SIGDEF)


def wait_for_exit(pid: int) -> int:
    """The return code as Popen reports it: the negative signal number if killed."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def probe_stderr(argv: list[str]) -> bytes:
    """Run argv to completion and return what it wrote to stderr (the containerizer probe)."""
    r, w = os.pipe()
    try:
        devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            pid = os.posix_spawn(argv[0], argv, os.environ, setsigmask=(), setsigdef=_SPAWN_SIGDEF,
                                 file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1),
                                               (os.POSIX_SPAWN_DUP2, w, 2)])
        finally:
            os.close(devnull)
            os.close(w)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.waitpid(pid, 0)
        return b"".join(chunks)
    finally:
        os.close(r)


_subreaper_set = False
_libc: object | None = None


def _load_libc() -> object | None:
    """libc through ctypes, loaded once in the runner so coordinators import nothing."""
    global _libc
    if _libc is None:
        try:
            import ctypes  # only the runner pays for ctypes, and only once

            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
    return _libc


def set_child_subreaper() -> bool:
    """Make this process (the runner) inherit orphans of its coordinators. Best effort, once."""
    global _subreaper_set
    if not _subreaper_set:
        libc = _load_libc()
        try:
            _subreaper_set = libc is not None and libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0  # type: ignore[attr-defined]
        except AttributeError:
            return False
    return _subreaper_set


def set_no_new_privs() -> bool:
    """No exec from here on gains privileges (setuid binaries, file capabilities)."""
    libc = _libc
    return libc is not None and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0  # type: ignore[attr-defined]


def _say(message: str) -> None:
    """One line on the coordinator's stderr (the runner's log); never raises."""
    try:
        os.write(2, ("thermos coordinator[%d]: %s\n" % (os.getpid(), message)).encode(errors="replace"))
    except OSError:
        pass


# --- platform ----------------------------------------------------------------------------------

class Platform(Protocol):
    """What Process needs from the system; replaceable in tests."""

    def fork(self) -> int: ...

    def getpid(self) -> int: ...

    def time(self) -> float: ...


class RealPlatform:
    def __init__(self, fork: Callable[[], int] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._fork = fork or os.fork
        self._clock = clock

    def fork(self) -> int:
        set_child_subreaper()
        return self._fork()

    def getpid(self) -> int:
        return os.getpid()

    def time(self) -> float:
        return self._clock()


class _Plan(NamedTuple):
    """Everything the coordinator needs, resolved in the runner so the child does no lookups."""

    user: pwd.struct_passwd
    switch_user: bool
    groups: list[int]
    console: tuple[int, int]
    argv: list[str] | None  # None: built in the child by probing mesos-containerizer
    env: dict[str, str]
    cwd: str  # the working directory as the process sees it
    spawn_cwd: str  # the directory to chdir to before spawning (after any chroot)
    rootfs: str | None  # containerizer mode: $MESOS_DIRECTORY/taskfs


def _stream_fd(stream: object, default: int) -> int:
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return default


# --- the process -------------------------------------------------------------------------------

class Process:
    """One run of one process: `start()` forks its coordinator (see the module docstring)."""

    class Error(Exception):
        pass

    class UnknownUserError(Error):
        pass

    class CheckpointError(Error):
        pass

    class UnspecifiedSandbox(Error):
        pass

    class PermissionError(Error):
        pass

    RCFILE = ".thermos_profile"
    CONTROL_WAIT_CHECK_INTERVAL = 0.1  # Aurora's file poll period; the wait is now event driven
    MAXIMUM_CONTROL_WAIT = 60.0
    FD_CLOEXEC = True
    LOG_READ_SIZE = READ_BUFFER_SIZE

    def __init__(self, name: str, cmdline: str, sequence: int, pathspec: TaskPath, sandbox_dir: str,
                 user: str | None = None, platform: Platform | None = None,
                 logger_destination: str = LoggerDestination.FILE,
                 logger_mode: str = LoggerMode.STANDARD,
                 rotate_log_size: int | None = None, rotate_log_backups: int | None = None,
                 fork: Callable[[], int] | None = None, chroot: bool = False,
                 preserve_env: bool = False, mesos_containerizer_path: str | None = None,
                 container_sandbox: str | None = None,
                 clock: Callable[[], float] = time.time, no_new_privs: bool = True,
                 task_marker: str | None = None) -> None:
        if not LoggerDestination.is_valid(logger_destination):
            raise ValueError("Logger destination %s is invalid." % logger_destination)
        if not LoggerMode.is_valid(logger_mode):
            raise ValueError("Logger mode %s is invalid." % logger_mode)
        if logger_mode == LoggerMode.ROTATE:
            if rotate_log_size is None or rotate_log_size <= 0:
                raise ValueError("Log size cannot be less than one byte.")
            if rotate_log_backups is None or rotate_log_backups <= 0:
                raise ValueError("Log backups cannot be less than one.")
        if chroot and not sandbox_dir:
            raise self.UnspecifiedSandbox("If using chroot, must specify sandbox!")
        if mesos_containerizer_path is not None and container_sandbox is None:
            raise self.UnspecifiedSandbox("If using mesos-containerizer, container_sandbox must be set.")
        self._name = name
        self._cmdline = cmdline
        self._seq = sequence
        self._pathspec = pathspec
        self._sandbox = sandbox_dir
        self._user = user
        self._platform: Platform = platform or RealPlatform(fork=fork, clock=clock)
        self._logger_destination = logger_destination
        self._logger_mode = logger_mode
        self._rotate_log_size = rotate_log_size
        self._rotate_log_backups = rotate_log_backups
        self._chroot = bool(chroot)
        self._preserve_env = bool(preserve_env)
        self._containerizer = (os.path.abspath(mesos_containerizer_path)
                               if mesos_containerizer_path is not None else None)
        self._container_sandbox = container_sandbox
        self._no_new_privs = bool(no_new_privs)
        if self._no_new_privs:
            _load_libc()
        self._pid: int | None = None
        self._fork_time: float | None = None
        self._logdir_fd: int | None = None
        # The runner's open checkpoints/<task_id>; coordinator checkpoints are created relative to it.
        self.checkpoint_dir_fd: int | None = None
        # cgroup.procs of the task's cgroup (thermos.core.containment): the coordinator joins it
        # before it starts anything, so every descendant can be found by whoever kills the task.
        self.cgroup_procs_fd: int | None = None
        self._task_marker = task_marker
        if self._sandbox:
            os.close(safe_fs.open_dir(self._sandbox, create_mode=0o755))

    # --- accessors used by the runner --------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def cmdline(self) -> str:
        return self._cmdline

    @property
    def pid(self) -> int | None:
        """The coordinator's pid (not the user process's)."""
        return self._pid

    @property
    def fork_time(self) -> float | None:
        return self._fork_time

    def ckpt_file(self) -> str:
        return self._pathspec.getpath("process_checkpoint")

    def process_logdir(self) -> str:
        return self._pathspec.getpath("process_logdir")

    def rebind(self, coordinator_pid: int, fork_time: float) -> None:
        """Adopt a coordinator forked by an earlier runner (recovery); nothing is forked."""
        self._pid = coordinator_pid
        self._fork_time = fork_time

    # --- runner side -------------------------------------------------------------------------

    def start(self) -> None:
        """Fork the coordinator and record FORKED; returns in the runner only.

        Raises UnknownUserError, PermissionError (another user without root), CheckpointError
        (the checkpoint is locked by a live coordinator, or FORKED could not be written) or Error
        (the log directory could not be made, or fork failed); never a bare OSError.
        """
        plan = self._plan()
        self._fork_time = self._platform.time()
        ckpt, head = self._open_checkpoint()
        try:
            self._logdir_fd = self._prepare_logdir(plan.user, plan.switch_user)
            control_r, control_w = os.pipe()
        except BaseException as err:
            ckpt.close()
            self._close_logdir()
            if isinstance(err, OSError):
                raise self.Error("Cannot prepare %s: %s" % (self._name, err)) from None
            raise
        try:
            pid = self._fork()
        except BaseException:
            for fd in (control_r, control_w):
                os.close(fd)
            ckpt.close()
            self._close_logdir()
            raise
        if pid == 0:
            self._become_coordinator(ckpt, head, control_r, plan)
        os.close(control_r)
        self._close_logdir()
        self._pid = pid
        self._finish_fork(ckpt, control_w)

    def _close_logdir(self) -> None:
        if self._logdir_fd is not None:
            os.close(self._logdir_fd)
            self._logdir_fd = None

    def _plan(self) -> _Plan:
        uid = os.getuid()
        try:
            current = pwd.getpwuid(uid)
        except KeyError:
            raise self.UnknownUserError("Unknown uid %s!" % uid) from None
        user = current
        if self._user is not None:
            try:
                user = pwd.getpwnam(self._user)
            except KeyError:
                raise self.UnknownUserError("Unknown user %r: no passwd entry" % self._user) from None
        switch = user.pw_uid != current.pw_uid
        if switch and current_euid() != 0:
            raise self.PermissionError("Must be root to run processes as other users!")
        groups = os.getgrouplist(user.pw_name, user.pw_gid) if switch else []
        console = (1, 2)
        if self._logger_destination in (LoggerDestination.CONSOLE, LoggerDestination.BOTH):
            console = (_stream_fd(sys.stdout, 1), _stream_fd(sys.stderr, 2))
        return _Plan(user, switch, groups, console, *self._launch(user))

    def _launch(self, user: pwd.struct_passwd) -> tuple[list[str] | None, dict[str, str], str, str,
                                                          str | None]:
        """argv, environment and directories of the user process (spec §6.3 steps 5-7).

        The profile is looked up through the host path the process will see it under.
        """
        home = user.pw_dir
        rootfs = None
        if not self._sandbox:
            cwd = spawn_cwd = host_cwd = os.getcwd()
        elif self._chroot:
            cwd = spawn_cwd = "/"
            host_cwd = self._sandbox
        elif self._containerizer is not None:
            cwd = home = self._container_sandbox or ""
            spawn_cwd = self._sandbox
            mesos_directory = os.environ.get("MESOS_DIRECTORY")
            rootfs = os.path.join(mesos_directory, TASK_FILESYSTEM_MOUNT_POINT) if mesos_directory else None
            host_cwd = os.path.join(rootfs, cwd.lstrip("/")) if rootfs else None
        else:
            cwd = spawn_cwd = host_cwd = home = self._sandbox
        env = dict(os.environ) if self._preserve_env else {}
        env.update(HOME=home, LOGNAME=user.pw_name, USER=user.pw_name,
                   PATH=self._task_path())
        if self._task_marker is not None and self.cgroup_procs_fd is None:
            env[MARKER_ENV] = self._task_marker  # no cgroup: the marker is how a killer finds us
        if host_cwd is not None and os.path.exists(os.path.join(host_cwd, self.RCFILE)):
            env["BASH_ENV"] = os.path.join(cwd, self.RCFILE)
        argv = None if self._containerizer is not None else ["/bin/bash", "-c", self._cmdline]
        return argv, env, cwd, spawn_cwd, rootfs

    def _task_path(self) -> str:
        """Root's PATH (often with its private tool directories) never leaks into tasks."""
        if self._preserve_env or current_euid() != 0:
            return os.environ.get("PATH", STANDARD_PATH)
        return STANDARD_PATH

    def _open_checkpoint(self) -> tuple[IO[bytes], int]:
        """Open and flock the coordinator checkpoint; the handle is inherited by the child.

        Reached from the runner's checkpoint directory descriptor as the runner's own checkpoint
        is (`TaskRunnerHelper.lock_file`): never through a symlink, a torn tail cut off first.
        """
        path = self.ckpt_file()
        try:
            fp = TaskRunnerHelper.lock_file(path, dir_fd=self.checkpoint_dir_fd)
        except OSError as err:
            raise self.CheckpointError("Could not open checkpoint %s: %s" % (path, err)) from None
        if fp is None:
            raise self.CheckpointError("Could not acquire the checkpoint lock for %s: a coordinator of "
                                       "this process is still alive" % path)
        return fp, os.fstat(fp.fileno()).st_size

    def _prepare_logdir(self, user: pwd.struct_passwd, switch: bool) -> int:
        """Make <log_dir>/<process>/<run> for the user and return a descriptor for it.

        Root walks there from the log base without following symlinks and gives the run
        directory to the user only if it made it: a directory that already exists must belong to
        the user already. The coordinator opens its log files relative to the descriptor.
        """
        base = self._pathspec.getpath("process_logbase")
        parts = os.path.relpath(self.process_logdir(), base).split(os.sep)
        owner = (user.pw_uid, user.pw_gid) if switch else None
        base_fd = safe_fs.open_dir(base, create_mode=LOG_DIR_MODE)
        try:
            fd = safe_fs.makedirs_at(base_fd, parts, LOG_DIR_MODE, leaf_owner=owner)
        finally:
            os.close(base_fd)
        st = os.fstat(fd)
        if owner is not None and st.st_uid != owner[0]:
            os.close(fd)
            raise self.PermissionError("log directory %s belongs to uid %d, not to %s; remove it" % (
                self.process_logdir(), st.st_uid, user.pw_name))
        return fd

    def _fork(self) -> int:
        """Fork with the runner's heap frozen out of the GC, and keep it frozen.

        A collection writes into the header of every object it visits; in the runner that would
        give it fresh copies of pages each coordinator forked earlier still holds, turning them into
        private memory of that coordinator. Frozen objects are never visited, so the freeze stays.
        The price is that cyclic garbage alive at a fork is never collected, which is why the young
        generations (where nearly all of it lives) are collected just before.
        """
        gc.collect(1)
        gc.freeze()
        try:
            return self._platform.fork()
        except OSError as err:
            raise self.Error("Could not fork a coordinator for %s: %s" % (self._name, err)) from None

    def _finish_fork(self, ckpt: IO[bytes], control_w: int) -> None:
        """Append FORKED durably, then wake the coordinator; closing our handle keeps its lock."""
        try:
            writer: ThriftRecordWriter[RunnerCkpt] = ThriftRecordWriter(ckpt)
            writer.set_sync(True)
            writer.write(RunnerCkpt(process_status=ProcessStatus(
                seq=self._seq, process=self._name, state=ProcessState.FORKED,
                fork_time=self._fork_time, coordinator_pid=self._pid)))
            self._seq += 1
            try:
                os.write(control_w, _CONTROL_OK)
            except OSError:
                pass  # the coordinator already died; the runner will see it as LOST
        except RecordIO.WriteError as err:
            raise self.CheckpointError("Could not record FORKED for %s: %s" % (self._name, err)) from None
        finally:
            os.close(control_w)  # without the byte, EOF tells the coordinator to give up
            ckpt.close()

    # --- coordinator side --------------------------------------------------------------------

    def _become_coordinator(self, ckpt: IO[bytes], head: int, control_r: int, plan: _Plan) -> NoReturn:
        try:
            gc.disable()
            self._coordinate(ckpt, head, control_r, plan)
        except BaseException as err:  # nothing may unwind into the runner
            _say("%s: %s: %s" % (self._name, type(err).__name__, err))
        finally:
            os._exit(0)

    def _coordinate(self, ckpt: IO[bytes], head: int, control_r: int, plan: _Plan) -> None:
        self._pid = self._platform.getpid()
        _reset_signals()
        os.setsid()  # first, so that nothing aimed at the runner's group reaches us from now on
        if self.cgroup_procs_fd is not None:
            try:
                os.write(self.cgroup_procs_fd, b"0")  # join the task's cgroup before spawning
            except OSError as err:
                _say("%s: cannot join the task's cgroup: %s" % (self._name, err))
        keep = {ckpt.fileno(), control_r, *plan.console}
        if self._logdir_fd is not None:
            keep.add(self._logdir_fd)
        _close_fds(keep, everything=self.FD_CLOEXEC)
        _ensure_stdio()
        self._seq = self._wait_for_control(head, control_r, ckpt.fileno())
        os.close(control_r)
        writer: ThriftRecordWriter[RunnerCkpt] = ThriftRecordWriter(ckpt)
        writer.set_sync(True)
        self._execute(writer, plan)

    def _wait_for_control(self, head: int, control_r: int, ckpt_fd: int) -> int:
        """Wait until the runner has recorded our FORKED; returns the next sequence number.

        The usual path wakes on the runner's byte and reads no file (the runner wrote exactly
        what we know). Otherwise the record must be in the checkpoint, or we give up.
        """
        poller = select.poll()
        poller.register(control_r, select.POLLIN)
        if poller.poll(self.MAXIMUM_CONTROL_WAIT * 1000) and os.read(control_r, 1) == _CONTROL_OK:
            return self._seq + 1
        tail = os.pread(ckpt_fd, max(0, os.fstat(ckpt_fd).st_size - head), head)  # our own handle
        record = ThriftRecordReader(io.BytesIO(tail), RunnerCkpt).try_read()
        if record is None:
            raise self.CheckpointError("Timed out waiting for checkpoint stream!")
        return self._check_control(record)

    def _check_control(self, record: RunnerCkpt) -> int:
        status = record.process_status
        if status is None:
            raise self.CheckpointError("No process status in checkpoint!")
        if (status.process != self._name or status.state != ProcessState.FORKED
                or status.fork_time != self._fork_time or status.coordinator_pid != self._pid):
            raise self.CheckpointError(
                "Lost control of the checkpoint stream! (got %s, fork_time %s, coordinator %s)" % (
                    status.process, status.fork_time, status.coordinator_pid))
        return status.seq + 1

    def _write_update(self, writer: ThriftRecordWriter[RunnerCkpt], state: int, **fields: object) -> None:
        status = ProcessStatus(seq=self._seq, process=self._name, state=state, **fields)
        try:
            writer.write(RunnerCkpt(process_status=status))
        except RecordIO.WriteError as err:
            _say("%s: cannot record %s: %s" % (
                self._name, ProcessState._VALUES_TO_NAMES.get(state, state), err))
        self._seq += 1

    def _drop(self, plan: _Plan) -> None:
        if plan.switch_user:
            drop_privileges(plan.user.pw_uid, plan.user.pw_gid, plan.groups)

    def _execute(self, writer: ThriftRecordWriter[RunnerCkpt], plan: _Plan) -> None:
        """Spawn the user process as the user (spec §6.3), record RUNNING, wait, record the exit.

        Log files are opened before any chroot (their paths are host paths) and, unless a chroot
        or the containerizer needs root for longer, after dropping privileges.
        """
        isolated = self._containerizer is not None
        stdout: Handler | None = None
        stderr: Handler | None = None
        start_time = self._platform.time()
        try:
            if not (self._chroot or isolated):
                self._drop(plan)
            resolver = LogDestinationResolver(
                self.process_logdir(), self._logger_destination, self._logger_mode,
                self._rotate_log_size, self._rotate_log_backups, console=plan.console,
                owner=(plan.user.pw_uid, plan.user.pw_gid) if plan.switch_user else None,
                dir_fd=self._logdir_fd)
            stdout, stderr, direct = resolver.get_handlers()
            self._close_logdir()  # handlers that need the directory keep their own duplicate
            if self._chroot:
                enter_chroot(self._sandbox)
                if not isolated:
                    self._drop(plan)
            argv = plan.argv if plan.argv is not None else self._containerizer_argv(plan)
            os.umask(TASK_UMASK)
            if self._no_new_privs and not set_no_new_privs():
                _say("%s: cannot set no_new_privs; setuid binaries keep working" % self._name)
            start_time = self._platform.time()
            pid, pipes = self._spawn(argv, plan.env, plan.spawn_cwd, stdout, stderr, direct)
        except Exception as err:  # any setup failure fails the run
            self._fail_before_spawn(writer, start_time, err, stderr)
            return
        if isolated:  # mesos-containerizer needed root; it switches the user process itself
            try:
                self._drop(plan)
            except OSError as err:  # the process runs regardless: keep recording it
                _say("%s: cannot drop privileges after launch: %s" % (self._name, err))
        self._write_update(writer, ProcessState.RUNNING, pid=pid, start_time=start_time)
        if pipes:
            pump(pipes, self.LOG_READ_SIZE)
        rc = wait_for_exit(pid)
        for handler, label in ((stdout, "stdout"), (stderr, "stderr")):
            if handler.dropped:
                _say("%s: dropped %d bytes of %s: %s" % (self._name, handler.dropped, label, handler.error))
            handler.close()
        state = (ProcessState.KILLED if rc < 0 else
                 ProcessState.SUCCESS if rc == 0 else ProcessState.FAILED)
        self._write_update(writer, state, return_code=rc, stop_time=self._platform.time())

    def _spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdout: Handler, stderr: Handler,
               direct: bool) -> tuple[int, dict[int, Handler]]:
        """Start the user process; for pumped logs, returns the pipes to drain."""
        if direct:
            pid = spawn(argv, env, cwd, stdout.fileno(), stderr.fileno())  # type: ignore[attr-defined]
            stdout.close()
            stderr.close()
            return pid, {}
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = spawn(argv, env, cwd, out_w, err_w)
        finally:
            os.close(out_w)
            os.close(err_w)
        return pid, {out_r: stdout, err_r: stderr}

    def _fail_before_spawn(self, writer: ThriftRecordWriter[RunnerCkpt], start_time: float,
                           err: Exception, stderr: Handler | None) -> None:
        """Record the run as a failed start, with the code a shell would use (126/127)."""
        denied = isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC)
        message = "thermos: cannot start %s: %s: %s" % (self._name, type(err).__name__, err)
        _say(message)
        if stderr is not None:
            try:
                stderr.write((message + "\n").encode(errors="replace"))
            except OSError:
                pass
        self._write_update(writer, ProcessState.RUNNING, pid=self._pid, start_time=start_time)
        self._write_update(writer, ProcessState.FAILED, return_code=126 if denied else 127,
                           stop_time=self._platform.time())

    def _containerizer_argv(self, plan: _Plan) -> list[str]:
        """Wrap bash in `mesos-containerizer launch`, in whichever flag form the binary speaks."""
        assert self._containerizer is not None
        if plan.rootfs is None:
            raise self.Error("MESOS_DIRECTORY is not set; mesos-containerizer needs it for the rootfs")
        command = {"shell": False, "value": "/bin/bash",
                   "arguments": ["/bin/bash", "-c", self._cmdline]}
        head = [self._containerizer, "launch", "--unshare_namespace_mnt"]
        if b"launch_info" in probe_stderr([self._containerizer, "launch"]):
            launch_info = {"rootfs": plan.rootfs, "user": plan.user.pw_name,
                           "working_directory": plan.cwd, "command": command}
            return head + ["--launch_info=%s" % json.dumps(launch_info)]
        return head + ["--working_directory=%s" % plan.cwd, "--rootfs=%s" % plan.rootfs,
                       "--user=%s" % plan.user.pw_name, "--command=%s" % json.dumps(command)]


# --- coordinator hygiene -------------------------------------------------------------------------

def _reset_signals() -> None:
    """Give every handled signal back its default action: neither the runner's Python handlers
    nor C ones (faulthandler's) may run in a coordinator. Ignored signals stay ignored, SIGINT is
    ignored as in Aurora, SIGTERM too (see below), and nothing stays blocked."""
    for sig in range(1, _signal.NSIG):
        try:
            if _signal.getsignal(sig) != _signal.SIG_IGN:
                _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL, SIGSTOP and the C library's reserved signals
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    # The graceful stop SIGTERMs the run's whole process group, which the coordinator leads: it
    # must live on to record the exit. The user process gets SIGTERM's default back at spawn.
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def _close_fds(keep: set[int], everything: bool) -> None:
    """Close the runner's descriptors (its checkpoint and its lock above all).

    With `everything` (FD_CLOEXEC) only stdio and `keep` survive; otherwise descriptors the runner
    deliberately made inheritable are left for the user process, as Popen(close_fds=False) did.
    """
    if everything:
        low = 3
        for fd in sorted(keep):
            if fd >= low:
                os.closerange(low, fd)
                low = fd + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        return
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < 3 or fd in keep:
            continue
        try:
            if not os.get_inheritable(fd):
                os.close(fd)
        except OSError:
            pass


def _ensure_stdio() -> None:
    """Give closed stdio slots /dev/null, so log descriptors never land on 0-2 by accident."""
    for fd in (0, 1, 2):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
