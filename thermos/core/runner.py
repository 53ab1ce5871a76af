"""TaskRunner: supervises one task's processes through coordinators, checkpointing every change.

The runner is the only writer of the runner checkpoint. Every state change is a record dispatched
through a CheckpointDispatcher: the universal handler appends it (with fsync) first, then the
process and task handlers act on it. Replaying the checkpoint therefore rebuilds the runner
exactly, and a runner killed at any moment is resumed by starting it again with the same flags.

Stages (spec thermos.md §5): ACTIVE runs the regular plan; CLEANING SIGTERMs what is left;
FINALIZING runs the `final` processes; then a terminal state, where everything is SIGKILLed.

Deliberate departures from Aurora, each a bug there:
* Event-driven: the loop wakes on inotify (a coordinator appended), pidfds (a coordinator died,
  even one adopted from a dead runner) and SIGCHLD, instead of polling once a second.
* Errors in the run loop end the runner (exit code + one log line) instead of being swallowed by
  `control()`; a failed checkpoint append raises `CheckpointError` instead of running unrecorded.
* Taking over a task in CLEANING neither resets the finalization clock nor re-sends SIGTERMs.
* Process records are applied to the plan the process belongs to (regular or finalizing), so a
  late record from a regular process during finalization cannot corrupt the finalizing plan.
* The runner is a child subreaper and its terminal kill sweeps every descendant, so daemons that
  double-fork or setsid() die with their task.
* Signals (kill/lose) only set a request that the loop acts on; no run loop inside a handler.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

from pystachio import Environment

from thermos.common import safe_fs
from thermos.common.ckpt import (
    CheckpointDispatcher,
    ProcessStateHandler,
    TaskStateHandler,
    UniversalStateHandler,
)
from thermos.common.path import CHECKPOINT_DIR_MODE, TaskPath
from thermos.common.planner import InvalidSchedule, TaskPlanner
from thermos.common.recordio import RecordIO, ThriftRecordWriter
from thermos.config.loader import (
    ConfigError,
    ThermosConfigLoader,
    ThermosTaskValidator,
    invalid_name,
    printable,
)
from thermos.config.plain import PlainStruct
from thermos.config.schema import ThermosContext
from thermos.core import containment
from thermos.core.helper import TaskRunnerHelper
from thermos.core.muxer import ProcessMuxer
from thermos.core.process import Process, set_child_subreaper
from thermos.core.wakeup import Waker, reset_in_child
from thermos.gen.thermos.ttypes import (
    ProcessState,
    ProcessStatus,
    RunnerCkpt,
    RunnerHeader,
    RunnerState,
    TaskState,
    TaskStatus,
)

log = logging.getLogger(__name__)

class TaskRunnerUniversalHandler(UniversalStateHandler):
    """Appends every transition to the runner checkpoint before any handler acts on it."""

    def __init__(self, runner: TaskRunner) -> None:
        self._runner = runner

    def on_process_transition(self, state: int, process_update: ProcessStatus) -> None:
        self._runner._ckpt_write(RunnerCkpt(process_status=process_update))

    def on_task_transition(self, state: int, task_update: TaskStatus) -> None:
        self._runner._ckpt_write(RunnerCkpt(task_status=task_update))

    def on_initialization(self, header: RunnerHeader) -> None:
        self._runner._ckpt_write(RunnerCkpt(runner_header=header))


class TaskRunnerProcessHandler(ProcessStateHandler):
    """Keeps the plans, the muxer and the coordinator objects in step with process records."""

    def __init__(self, runner: TaskRunner) -> None:
        self._runner = runner

    def on_waiting(self, update: ProcessStatus) -> None:
        r = self._runner
        r._task_processes[update.process] = r._process_for(update.process, update.seq + 1)
        r._muxer.register(update.process, update.seq - 1)

    def on_forked(self, update: ProcessStatus) -> None:
        r = self._runner
        r._task_processes[update.process].rebind(update.coordinator_pid, update.fork_time)
        r._plan_of(update.process).set_running(update.process, update.fork_time)
        if not r._recovery and r._waker is not None:
            r._waker.watch_pid(update.coordinator_pid)

    def on_running(self, update: ProcessStatus) -> None:
        self._runner._plan_of(update.process).set_running(update.process)

    def _finished(self, update: ProcessStatus) -> None:
        r = self._runner
        if not r._recovery:  # leftovers of the run; gone before the next run takes the lock
            TaskRunnerHelper.kill_process(r._state, update.process, wait=r.EXIT_WAIT)
        r._task_processes.pop(update.process, None)
        with contextlib.suppress(ProcessMuxer.ProcessNotFound):
            r._muxer.unregister(update.process)
        r._plan_of(update.process).set_running(update.process)

    def on_success(self, update: ProcessStatus) -> None:
        self._finished(update)
        self._runner._plan_of(update.process).add_success(update.process, update.stop_time)

    def on_failed(self, update: ProcessStatus) -> None:
        self._finished(update)
        self._runner._plan_of(update.process).add_failure(update.process, update.stop_time)

    def on_lost(self, update: ProcessStatus) -> None:
        self._finished(update)
        self._runner._plan_of(update.process).lost(update.process, None)

    def on_killed(self, update: ProcessStatus) -> None:
        # A killed run is a loss, as in Aurora: it is retried and does not count as a failure.
        self._finished(update)
        self._runner._plan_of(update.process).lost(update.process, update.stop_time)


class TaskRunnerTaskHandler(TaskStateHandler):
    def __init__(self, runner: TaskRunner) -> None:
        self._runner = runner

    def on_active(self, update: TaskStatus) -> None:
        r = self._runner
        if not r._recovery:
            TaskRunnerHelper.initialize_task(r._pathspec, r._task_json)

    def on_cleaning(self, update: TaskStatus) -> None:
        r = self._runner
        if r._finalization_start is None:
            r._finalization_start = update.timestamp_ms / 1000.0
        if update.requested_state is not None and r._terminal_state is None:
            # the kill was recorded: a runner restarted mid-stop ends the task as it was asked to
            r._terminal_state = update.requested_state
            if update.preemption_deadline_ms is not None:
                r._preemption_deadline = update.preemption_deadline_ms / 1000.0
        if not r._recovery and not r._taking_over:
            r._terminate_plan(r._regular_plan)

    def on_finalizing(self, update: TaskStatus) -> None:
        r = self._runner
        if not r._recovery and not r._taking_over:
            r._kill()
        if r._finalization_start is None:
            r._finalization_start = update.timestamp_ms / 1000.0

    def _terminal(self, update: TaskStatus) -> None:
        r = self._runner
        if not r._recovery:
            r._kill()
            r._kill_contained(remove=True)
            TaskRunnerHelper.finalize_task(r._pathspec)

    on_success = on_failed = on_killed = on_lost = _terminal


class TaskRunner:
    """Runs a task to completion, resumable at any point from its checkpoint."""

    class Error(Exception):
        pass

    class InternalError(Error):
        pass

    class InvalidTask(Error):
        pass

    class PermissionError(Error):
        pass

    class StateError(Error):
        pass

    class CheckpointError(Error):
        """A checkpoint append failed; going on would act without a record."""

    LOST_TIMEOUT = 60.0  # FORKED without RUNNING for this long: the coordinator never started
    MAX_ITERATION_WAIT = 15.0
    STAGE_ITERATION_WAIT = 1.0  # CLEANING and FINALIZING re-check at least this often
    POLL_FALLBACK = 1.0  # how often to look when inotify is not available
    EXIT_WAIT = 5.0  # how long SIGKILLed leftovers of a finished run may take to disappear

    def __init__(self, task: Any, checkpoint_root: str, sandbox: str, log_dir: str | None = None,
                 task_id: str | None = None, portmap: dict[str, int] | None = None, user: str | None = None,
                 chroot: bool = False, clock: Any = time, universal_handler: type | None = None,
                 planner_class: type[TaskPlanner] = TaskPlanner, hostname: str | None = None,
                 process_logger_destination: str | None = None, process_logger_mode: str | None = None,
                 rotate_log_size_mb: int | None = None, rotate_log_backups: int | None = None,
                 preserve_env: bool = False, mesos_containerizer_path: str | None = None,
                 container_sandbox: str | None = None, no_new_privs: bool = True) -> None:
        if not issubclass(planner_class, TaskPlanner):
            raise TypeError("planner_class must be a TaskPlanner.")
        self._clock = clock
        launch_time = clock.time()
        self._launch_time_ms = int(launch_time * 1000)
        if task_id is None:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(launch_time))
            task_id = "%s-%s.%06d" % (task.name().get(), stamp, int((launch_time % 1) * 1e6))
        problem = invalid_name(task_id)
        if problem is not None:
            raise self.InvalidTask("invalid task id %s: %s" % (printable(task_id), problem))
        self._task_id = task_id
        self._no_new_privs = no_new_privs
        current_user = TaskRunnerHelper.get_actual_user()
        self._user = user or current_user
        if self._user != current_user and os.geteuid() != 0:
            raise ValueError("task specifies user %s, but %s does not have permission to setuid." % (
                self._user, current_user))
        self._portmap = dict(portmap or {})
        self._checkpoint_root = checkpoint_root
        self._sandbox = sandbox
        self._log_dir = log_dir or os.path.join(sandbox, ".logs")
        self._pathspec = TaskPath(root=checkpoint_root, task_id=task_id, log_dir=self._log_dir)
        self._hostname = hostname or socket.gethostname()
        self._chroot = chroot
        self._preserve_env = preserve_env
        self._mesos_containerizer_path = mesos_containerizer_path
        self._container_sandbox = container_sandbox
        self._logger_destination = process_logger_destination
        self._logger_mode = process_logger_mode
        self._rotate_log_size_mb = rotate_log_size_mb
        self._rotate_log_backups = rotate_log_backups

        self._planner_class = planner_class
        self._task = self._validated(task)
        try:
            ThermosTaskValidator.assert_same_task(self._pathspec, self._task)
        except ConfigError as err:
            raise self.InvalidTask(str(err)) from None
        # Everything below reads the interpolated task's plain data (self._plain): pystachio's
        # accessors copy and re-interpolate on every call, which made start-up grow with the
        # number of processes.
        self._task_json = json.dumps(self._plain.get())
        self._processes = {p.name().get(): p for p in self._plain.processes()}
        self._process_order = list(self._processes)
        self._regular_plan, self._finalizing_plan = self._plans
        self._final_names = {name for name, p in self._processes.items() if p.final().get()}

        self._muxer = ProcessMuxer(self._pathspec)
        self._task_processes: dict[str, Process] = {}
        self._state = RunnerState(processes={})
        self._dispatcher = CheckpointDispatcher()
        handler_class = universal_handler or TaskRunnerUniversalHandler
        self._dispatcher.register_handler(handler_class(self))
        self._dispatcher.register_handler(TaskRunnerProcessHandler(self))
        self._dispatcher.register_handler(TaskRunnerTaskHandler(self))

        self._ckpt: ThriftRecordWriter[RunnerCkpt] | None = None
        self._ckpt_dir_fd: int | None = None
        self._cgroup_fd: int | None = None
        self._cgroup_path: str | None = None
        self._copying = False  # dispatching a record copied from a coordinator checkpoint
        self._marker = containment.task_marker(checkpoint_root, task_id)
        self._waker: Waker | None = None
        self._terminal_state: int | None = None
        self._preemption_deadline: float | None = None
        self._finalization_start: float | None = None
        self._kill_request: tuple[int, float] | None = None
        self._taking_over = False
        self._recovery = True
        self._replay_runner_ckpt()

    # ---- construction helpers -------------------------------------------------------------

    def _validated(self, task: Any) -> Any:
        """The task bound to this launch and interpolated, once it is known to be valid.

        The fast path proves validity from one interpolation, one typecheck and the plain data
        (names, plans); the loader's validators, which walk the pystachio task once per check and
        per process (most of a 100-process task's start-up), run only to explain a problem.
        """
        context = ThermosContext(task_id=self._task_id, ports=self._portmap, user=self._user)
        refs: list[Any] = []
        try:
            bound, refs = task.bind(Environment(thermos=context)).interpolate()
            checked = bound.check()
            problem = " ".join(checked.message().split()) or "invalid once bound"
            if not refs and checked.ok():
                plain = PlainStruct(bound.get())
                self._plans = self._plainly_valid(plain)
                if self._plans is not None:
                    self._plain = plain
                    return bound
        except Exception as err:  # noqa: BLE001 - whatever it is, the validators below will name it
            problem = "%s: %s" % (type(err).__name__, err)
        validator = ThermosTaskValidator
        try:
            validator.assert_valid_task(task)
            validator.assert_valid_ports(task, self._portmap)
        except ConfigError as err:
            raise self.InvalidTask(str(err)) from None
        if refs:
            raise self.InvalidTask("Failed to interpolate task, missing: %s" % ", ".join(
                str(ref) for ref in refs))
        raise self.InvalidTask("task %s: %s" % (printable(self._task_id), problem))

    def _plainly_valid(self, plain: PlainStruct) -> tuple[TaskPlanner, TaskPlanner] | None:
        """What the loader checks, decided (not explained) from plain data; the regular and the
        finalizing plan when the task is valid (building them is the plan check)."""
        names = [p.name().get() for p in plain.processes()]
        if not names or len(set(names)) != len(names) or any(
                not isinstance(n, str) or invalid_name(n) for n in names):
            return None
        make = self._planner_class
        try:
            return (make(plain, clock=self._clock, process_filter=lambda p: p.final().get() is False),
                    make(plain, clock=self._clock, process_filter=lambda p: p.final().get() is True))
        except InvalidSchedule:
            return None

    @classmethod
    def get(cls, task_id: str, checkpoint_root: str) -> TaskRunner | None:
        """A runner bound to an existing active task, from its task record and checkpoint."""
        path = TaskPath(root=checkpoint_root, task_id=task_id, state="active")
        task_json = path.getpath("task_path")
        if not os.path.exists(task_json):
            return None
        try:
            loader = ThermosConfigLoader.load_json(task_json)
        except (ConfigError, OSError) as err:
            log.error("Cannot load %s: %s", task_json, err)
            return None
        if len(loader.tasks()) == 0:
            return None
        state = CheckpointDispatcher.from_file(path.getpath("runner_checkpoint"))
        if state is None or state.header is None:
            return None
        try:
            return cls(loader.tasks()[0].task, checkpoint_root, state.header.sandbox,
                       log_dir=state.header.log_dir, task_id=task_id,
                       portmap=dict(state.header.ports or {}), hostname=state.header.hostname,
                       user=state.header.user)
        except Exception as err:  # noqa: BLE001 - Aurora's contract: None when it cannot be rebuilt
            log.error("Failed to reconstitute checkpoint in TaskRunner.get: %s", err)
            return None

    def _replay_runner_ckpt(self) -> None:
        ckpt = self._pathspec.getpath("runner_checkpoint")
        if not os.path.exists(ckpt):
            return
        try:
            for record in CheckpointDispatcher.iter_updates(ckpt):
                self._dispatcher.dispatch(self._state, record, recovery=True)
        except CheckpointDispatcher.Error as err:
            raise self.InternalError("Cannot replay %s: %s" % (ckpt, err)) from None
        log.debug("Replayed %s", ckpt)

    def _process_for(self, name: str, sequence: int) -> Process:
        process = self._processes[name]
        run = len(self._state.processes[name]) - 1
        destination, mode, size, backups = self._logger_args(process)
        return Process(
            name, process.cmdline().get(), sequence,
            self._pathspec.given(process=name, run=run, log_dir=self._log_dir), self._sandbox,
            self._user, chroot=self._chroot, fork=self._fork, logger_destination=destination,
            logger_mode=mode, rotate_log_size=size, rotate_log_backups=backups,
            preserve_env=self._preserve_env, mesos_containerizer_path=self._mesos_containerizer_path,
            container_sandbox=self._container_sandbox, clock=self._clock.time,
            no_new_privs=self._no_new_privs, task_marker=self._marker)

    def _logger_args(self, process: Any) -> tuple[str, str, int | None, int | None]:
        """Spec §5.10: a process's own logger wins; otherwise the runner's flags; else defaults."""
        default_size, default_backups = 100 * 1024 * 1024, 5
        if not process.has_logger():
            destination = self._logger_destination or "file"
            mode = self._logger_mode or "standard"
            if mode != "rotate":
                return destination, mode, None, None
            size = self._rotate_log_size_mb * 1024 * 1024 if self._rotate_log_size_mb else default_size
            return destination, mode, size, self._rotate_log_backups or default_backups
        logger = process.logger()
        destination, mode = logger.destination().get(), logger.mode().get()
        if mode != "rotate":
            return destination, mode, None, None
        if logger.has_rotate():
            return destination, mode, logger.rotate().log_size().get(), logger.rotate().backups().get()
        return destination, mode, default_size, default_backups

    def _fork(self) -> int:
        """fork() for Process.start: the child must hold nothing of the runner's."""
        pid = os.fork()
        if pid == 0:
            reset_in_child(self._waker)
            if self._ckpt is not None:
                # the child shares the runner's flock: it must not keep it after we die
                with contextlib.suppress(OSError):
                    os.close(self._ckpt.fp.fileno())
        return pid

    # ---- properties -----------------------------------------------------------------------

    @property
    def task_id(self) -> str:
        return self._task_id

    @property
    def state(self) -> RunnerState:
        return self._state

    @property
    def task_state(self) -> int:
        return self._state.statuses[-1].state if self._state.statuses else TaskState.ACTIVE

    @property
    def is_terminal(self) -> bool:
        return TaskRunnerHelper.is_task_terminal(self.task_state)

    # ---- records --------------------------------------------------------------------------

    def _ckpt_write(self, record: RunnerCkpt) -> None:
        """Append a record; fsynced, except copies of coordinator records (see _apply_updates)."""
        if self._recovery:
            return
        if self._ckpt is None:
            raise self.InternalError("Attempting to write to the checkpoint without control of it")
        try:
            self._ckpt.write(record, fsync=not self._copying)
        except RecordIO.WriteError as err:
            raise self.CheckpointError(str(err)) from None

    def _dispatch(self, record: RunnerCkpt, recovery: bool = False) -> None:
        self._dispatcher.dispatch(self._state, record, recovery=recovery)

    def _current_run(self, name: str) -> ProcessStatus | None:
        runs = self._state.processes.get(name)
        return runs[-1] if runs else None

    def _set_process_status(self, name: str, state: int, **kw: Any) -> None:
        current = self._current_run(name)
        seq = kw.pop("sequence_number", None)
        if seq is None:
            seq = 0 if current is None else current.seq + 1
        self._dispatch(RunnerCkpt(process_status=ProcessStatus(seq=seq, process=name, state=state, **kw)))

    def _set_task_status(self, state: int, **intent: Any) -> None:
        self._dispatch(RunnerCkpt(task_status=TaskStatus(
            state=state, timestamp_ms=int(self._clock.time() * 1000), runner_pid=os.getpid(),
            runner_uid=os.getuid(), **intent)))

    def _plan_of(self, name: str) -> TaskPlanner:
        return self._finalizing_plan if name in self._final_names else self._regular_plan

    def _apply_updates(self) -> int:
        """Copy coordinator records into the runner checkpoint and act on them.

        One rule, in the run loop and on a takeover alike: a record already in the runner
        checkpoint is skipped; one that skips a sequence number is dropped with an error line,
        because a replay could never apply it (it would leave the checkpoint disagreeing with the
        runner). The run then ends as LOST once its coordinator is gone.
        """
        applied = 0
        for update in self._muxer.select():
            current = self._current_run(update.process)
            if current is not None and update.seq <= current.seq:
                continue  # already recorded (written by us, or replayed)
            expected = 0 if current is None else current.seq + 1
            if update.seq != expected:
                log.error("Dropping %s record %d of process %s from its coordinator checkpoint: expected "
                          "sequence number %d (records are missing there)", ProcessState._VALUES_TO_NAMES.get(
                              update.state, update.state), update.seq, update.process, expected)
                continue
            # The record is durable in its coordinator checkpoint already, and a runner that takes
            # over copies whatever this file lacks (the same rule, above): no second fsync. The
            # next fsynced record flushes it anyway, so the file stays a prefix of the truth.
            self._copying = True
            try:
                self._dispatch(RunnerCkpt(process_status=update))
            finally:
                self._copying = False
            applied += 1
        return applied

    # ---- taking control -------------------------------------------------------------------

    @contextlib.contextmanager
    def control(self, force: bool = False) -> Iterator[None]:
        """Take leadership of the task via its checkpoint lock; resume it; release on exit."""
        if self.is_terminal:
            raise self.StateError("Cannot take control of a task in terminal state.")
        self._open_sandbox()
        set_child_subreaper()
        ckpt_file = self._pathspec.getpath("runner_checkpoint")
        self._ckpt_dir_fd = self._open_checkpoint_dir()
        self._muxer.dir_fd = self._ckpt_dir_fd
        self._open_cgroup()
        try:
            self._ckpt = TaskRunnerHelper.open_checkpoint(ckpt_file, force=force, state=self._state,
                                                          dir_fd=self._ckpt_dir_fd)
        except TaskRunnerHelper.PermissionError as err:
            self._close_ckpt_dir()
            self._close_cgroup()
            raise self.PermissionError(str(err)) from None
        except OSError as err:
            self._close_ckpt_dir()
            self._close_cgroup()
            raise self.CheckpointError("cannot open checkpoint %s: %s" % (ckpt_file, err.strerror or err)) \
                from None
        try:
            self._waker = Waker(self._pathspec.getpath("checkpoint_path"))
            self._recovery = False
            self._taking_over = bool(self._state.statuses)
            try:
                self._set_task_status(self.task_state)
            finally:
                self._taking_over = False
            self._resume_task()
            yield
        finally:
            self.close_ckpt()
            self._close_ckpt_dir()
            self._close_cgroup()
            if self._waker is not None:
                self._waker.close()
                self._waker = None

    def _open_sandbox(self) -> None:
        """Create the sandbox if missing, owned by the task's user, never through a symlink."""
        owner = None
        if self._user != TaskRunnerHelper.get_actual_user():
            try:
                entry = pwd.getpwnam(self._user)
                owner = (entry.pw_uid, entry.pw_gid)
            except KeyError:
                pass  # the coordinator reports the unknown user with its own error
        try:
            os.close(safe_fs.open_dir(self._sandbox, create_mode=0o755, leaf_owner=owner))
        except OSError as err:
            raise self.Error("cannot create sandbox %s: %s" % (self._sandbox, err.strerror or err)) from None

    def _open_checkpoint_dir(self) -> int:
        """Open checkpoints/<task_id> once; coordinators and the runner write relative to it.

        A checkpoint root renamed or replaced later cannot redirect a write, and one found owned
        by somebody else, or writable by others, is refused.
        """
        path = self._pathspec.getpath("checkpoint_path")
        try:
            fd = safe_fs.open_dir(path, create_mode=CHECKPOINT_DIR_MODE)
        except OSError as err:
            raise self.CheckpointError("cannot open checkpoint directory %s: %s" % (
                path, err.strerror or err)) from None
        try:
            safe_fs.check_private_dir(fd, path)
        except safe_fs.UnsafePath as err:
            os.close(fd)
            raise self.CheckpointError(str(err)) from None
        exposed = safe_fs.untrusted_ancestor(path)
        if exposed is not None:
            log.warning("Checkpoint root %s lies inside %s, which other users can write; keep checkpoint "
                        "roots on root-owned paths (README: Security model)", self._checkpoint_root, exposed)
        return fd

    def _open_cgroup(self) -> None:
        """The task's cgroup: the one recorded in the header (a runner before us made it), or a
        new one for a new task. A task that started without one keeps its marker instead."""
        header = self._state.header
        if header is not None and not header.cgroup:
            return
        if header is not None:
            cgroup: containment.TaskCgroup | None = containment.TaskCgroup.at(header.cgroup)
        else:
            cgroup = containment.TaskCgroup.for_task(self._checkpoint_root, self._task_id)
        if cgroup is None or not cgroup.create():
            return
        try:
            self._cgroup_fd = cgroup.open_procs()
            self._cgroup_path = cgroup.path
        except OSError as err:
            log.warning("Cannot use cgroup %s: %s", cgroup.path, err.strerror)

    def _close_cgroup(self) -> None:
        if self._cgroup_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._cgroup_fd)
            self._cgroup_fd = None
        self._cgroup_path = None

    def _kill_contained(self, remove: bool) -> None:
        """Everything left in the task's cgroup, or carrying its marker: daemons that setsid()
        away from every tree, including ones a dead runner before us left behind."""
        for pid in containment.kill_task(self._checkpoint_root, self._task_id, self._state,
                                         exclude={os.getpid()}, remove=remove):
            log.info("Killed leftover %d of the task", pid)

    def _close_ckpt_dir(self) -> None:
        if self._ckpt_dir_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._ckpt_dir_fd)
            self._ckpt_dir_fd = None
            self._muxer.dir_fd = None

    def _infer_stop_intent(self) -> None:
        """A task found stopping with a healthy, unfinished regular plan was being killed.

        Only for checkpoints without a recorded intent (written by Aurora, or a kill that came
        while the task was already stopping): the CLEANING record of a kill carries
        `requested_state`, which replay has applied already.
        """
        if self._terminal_state is not None:
            return
        if self.task_state in (TaskState.CLEANING, TaskState.FINALIZING) and self.is_healthy() \
                and not self._regular_plan.is_complete():
            self._terminal_state = TaskState.KILLED

    def _resume_task(self) -> None:
        self._infer_stop_intent()
        if self._state.header is None:
            try:
                uid: int | None = pwd.getpwnam(self._user).pw_uid
            except KeyError:
                uid = None
            self._dispatch(RunnerCkpt(runner_header=RunnerHeader(
                task_id=self._task_id, launch_time_ms=self._launch_time_ms, sandbox=self._sandbox,
                log_dir=self._log_dir, hostname=self._hostname, user=self._user, uid=uid,
                ports=self._portmap, cgroup=self._cgroup_path)))
        self._apply_updates()  # what coordinators recorded while no runner was reading
        for name in self._muxer.registered:
            run = self._current_run(name)
            if run is not None and run.coordinator_pid and self._waker is not None:
                coordinator, _, _ = TaskRunnerHelper.scan_process(self._state, name)
                if coordinator is not None:
                    self._waker.watch_pid(run.coordinator_pid)

    def close_ckpt(self) -> None:
        if self._ckpt is not None:
            with contextlib.suppress(OSError):
                self._ckpt.close()
            self._ckpt = None

    # ---- the main loop --------------------------------------------------------------------

    def run(self, force: bool = False) -> None:
        """Run the task to a terminal state (returns at once if it already is terminal)."""
        if self.is_terminal:
            self._settle_terminal_task()
            return
        with self.control(force):
            self._run()

    def _settle_terminal_task(self) -> None:
        """Finish what a runner killed right after recording the terminal state left undone."""
        for name in self._state.processes:
            TaskRunnerHelper.kill_process(self._state, name)
        self._kill_contained(remove=True)
        active = self._pathspec.given(state="active").getpath("task_path")
        if os.path.exists(active):
            TaskRunnerHelper.finalize_task(self._pathspec)

    def request_kill(self, terminal_status: int = TaskState.KILLED, preemption_wait: float = 60.0) -> None:
        """Ask the running loop to stop the task; safe to call from a signal handler."""
        self._kill_request = (terminal_status, preemption_wait)

    def _run(self) -> None:
        stages = {TaskState.ACTIVE: self._active_stage, TaskState.CLEANING: self._cleaning_stage,
                  TaskState.FINALIZING: self._finalizing_stage}
        transitions = {TaskState.ACTIVE: lambda: TaskState.CLEANING,
                       TaskState.CLEANING: self._cleaning_transition,
                       TaskState.FINALIZING: self._terminal_task_state}
        while not self.is_terminal:
            self._honour_kill_request()
            if self.is_terminal:
                break
            state = self.task_state
            wait = stages[state]()
            if wait is None:
                self._set_task_status(transitions[state]())
                continue
            self.collect_updates(wait)
            TaskRunnerHelper.reap_children()

    def _honour_kill_request(self) -> None:
        if self._kill_request is None:
            return
        terminal_status, preemption_wait = self._kill_request
        self._kill_request = None
        if self._terminal_state is not None:
            return
        log.info("Stopping task as %s (preemption wait %.1fs)",
                 TaskState._VALUES_TO_NAMES[terminal_status], preemption_wait)
        self._terminal_state = terminal_status
        self._preemption_deadline = self._clock.time() + preemption_wait
        if self.task_state == TaskState.ACTIVE:
            self._set_task_status(TaskState.CLEANING, requested_state=terminal_status,
                                  preemption_deadline_ms=int(self._preemption_deadline * 1000))

    def collect_updates(self, timeout: float) -> int:
        """Apply coordinator records as they arrive; return after some, an event, or `timeout`."""
        deadline = self._clock.time() + timeout
        while True:
            applied = self._apply_updates()
            if applied or self._kill_request is not None:
                return applied
            remaining = deadline - self._clock.time()
            if remaining <= 0:
                return 0
            waker = self._waker
            if waker is None:
                self._clock.sleep(min(remaining, self.POLL_FALLBACK))
                continue
            if waker.wait(remaining if waker.event_driven else min(remaining, self.POLL_FALLBACK)):
                return self._apply_updates()  # a record, or an exit the stage must look at
            if waker.event_driven:
                return 0  # the whole timeout passed without an event

    # ---- stages ---------------------------------------------------------------------------

    def _active_stage(self) -> float | None:
        plan = self._regular_plan
        launched = self._run_plan(plan)
        if plan.is_complete() or not self.is_healthy():
            return None
        wait = plan.min_wait(self._clock.time())
        if wait <= 0 and not launched:
            wait = self.MAX_ITERATION_WAIT  # runnable but held by max_concurrency: wait for an exit
        return min(self.MAX_ITERATION_WAIT, max(wait, 0.001))

    def _cleaning_stage(self) -> float | None:
        remaining = self._finalization_remaining()
        if remaining > 0 and self.has_running_processes():
            return min(remaining, self.STAGE_ITERATION_WAIT)
        return None

    def _cleaning_transition(self) -> int:
        if self._finalization_remaining() <= 0:
            return self._terminal_task_state()
        return TaskState.FINALIZING

    def _finalizing_stage(self) -> float | None:
        plan = self._finalizing_plan
        self._run_plan(plan)
        if self.deadlocked(plan):
            return None
        remaining = self._finalization_remaining()
        if remaining > 0 and not plan.is_complete():
            wait = plan.min_wait(self._clock.time())
            if wait <= 0:
                wait = self.STAGE_ITERATION_WAIT
            return min(remaining, self.STAGE_ITERATION_WAIT, max(wait, 0.001))
        return None

    def _terminal_task_state(self) -> int:
        if self._terminal_state is not None:
            return self._terminal_state
        return TaskState.SUCCESS if self.is_healthy() else TaskState.FAILED

    def _finalization_remaining(self) -> float:
        now = self._clock.time()
        if self._preemption_deadline is not None:
            return max(0.0, self._preemption_deadline - now)
        if self._finalization_start is None:
            return sys.float_info.max
        wait = float(self._plain.finalization_wait().get())
        return max(0.0, wait - max(0.0, now - self._finalization_start))

    # ---- scheduling -----------------------------------------------------------------------

    def _run_plan(self, plan: TaskPlanner) -> bool:
        running = list(plan.running)
        for name in running:
            if self.is_process_lost(name):
                log.warning("Process %s is lost", name)
                self._set_process_status(name, ProcessState.LOST)
        now = self._clock.time()
        runnable = sorted(plan.runnable_at(now), key=self._process_order.index)
        concurrency = self._plain.max_concurrency().get()
        if concurrency > 0:
            runnable = runnable[:max(0, concurrency - len(plan.running))]
        launched = False
        for name in runnable:
            process = self._task_processes.get(name)
            if process is None:
                self._set_process_status(name, ProcessState.WAITING)
                process = self._task_processes[name]
            else:
                current = self._current_run(name)
                if current is None or current.state != ProcessState.WAITING:
                    raise self.InternalError("Process %s has a coordinator but is not WAITING" % name)
            process.checkpoint_dir_fd = self._ckpt_dir_fd
            process.cgroup_procs_fd = self._cgroup_fd
            try:
                process.start()
                launched = True
            except Process.Error as err:
                log.error("Failed to launch process %s: %s", name, err)
                self._set_process_status(name, ProcessState.FAILED)
        return launched

    def is_process_lost(self, name: str) -> bool:
        current = self._current_run(name)
        if current is None:
            return False
        if current.state == ProcessState.FORKED:
            return self._clock.time() - (current.fork_time or 0) > self.LOST_TIMEOUT
        if current.state == ProcessState.RUNNING:
            if self._waker is not None and current.coordinator_pid and self._waker.watching(
                    current.coordinator_pid):
                return False  # its pidfd has not fired: alive, no /proc scan needed
            coordinator, _, _ = TaskRunnerHelper.scan_process(self._state, name)
            if coordinator is None:
                return not self._muxer.has_data(name)
        return False

    def deadlocked(self, plan: TaskPlanner | None = None) -> bool:
        plan = plan or self._regular_plan
        now = self._clock.time()
        return (not plan.running and not plan.runnable_at(now) and not plan.waiting_at(now)
                and not plan.is_complete())

    def is_healthy(self) -> bool:
        max_failures = self._plain.max_failures().get()
        failed_ok = max_failures == 0 or len(self._regular_plan.failed) < max_failures
        return not self.deadlocked(self._regular_plan) and failed_ok

    def has_running_processes(self) -> bool:
        for coordinator, process, children in TaskRunnerHelper.scan_tree(self._state).values():
            if coordinator is not None or process is not None or children:
                return True
        return False

    def has_active_processes(self) -> bool:
        return any(not TaskRunnerHelper.is_process_terminal(runs[-1].state)
                   for runs in self._state.processes.values() if runs)

    # ---- stopping -------------------------------------------------------------------------

    def _terminate_plan(self, plan: TaskPlanner) -> None:
        TaskRunnerHelper.terminate_orphans(self._state)
        for name in list(plan.running):
            current = self._current_run(name)
            if current is not None and current.state in (ProcessState.FORKED, ProcessState.RUNNING):
                TaskRunnerHelper.terminate_process(self._state, name)

    def _kill(self) -> None:
        """SIGKILL everything left; record KILLED for live runs and LOST for vanished ones."""
        self._apply_updates()
        for name, (coordinator, process, children) in sorted(TaskRunnerHelper.scan_tree(self._state).items()):
            current = self._current_run(name)
            alive = bool(coordinator or process or children)
            if current is None:
                continue
            if TaskRunnerHelper.is_process_terminal(current.state):
                if alive:
                    TaskRunnerHelper.kill_process(self._state, name)
                continue
            if alive:
                TaskRunnerHelper.kill_process(self._state, name)
                self._set_process_status(name, ProcessState.KILLED, stop_time=self._clock.time(),
                                         return_code=-1)
            elif current.state != ProcessState.WAITING:
                self._set_process_status(name, ProcessState.LOST)
        for pid in TaskRunnerHelper.kill_descendants():
            log.info("Killed leftover descendant %d", pid)
        self._kill_contained(remove=False)
        TaskRunnerHelper.reap_children()

    def kill(self, force: bool = False, terminal_status: int = TaskState.KILLED,
             preemption_wait: float = 60.0) -> None:
        """Take control of the task (killing its runner with force) and stop it."""
        if terminal_status not in (TaskState.KILLED, TaskState.LOST):
            raise self.Error("terminal_status must be KILLED or LOST")
        with self.control(force):
            if self.is_terminal:
                log.warning("Task is already terminal")
                return
            self.request_kill(terminal_status, preemption_wait)
            self._run()

    def lose(self, force: bool = False) -> None:
        self.kill(force, terminal_status=TaskState.LOST, preemption_wait=0.0)
