"""ThermosTaskRunner: thermos_runner as a subprocess, seen by the executor as a status checker.

The executor never runs task code itself (ARCHITECTURE.md): it writes the task JSON, starts
`thermos_runner` in its own session (so nothing the executor's process group receives reaches it),
signals it (SIGUSR1 kill, SIGUSR2 lose) and learns the outcome from the runner checkpoint.

Beyond Aurora (which reported LOST when the runner died): a runner that dies by a signal while its
task is still ACTIVE is started again with the same flags. The checkpoint makes that safe (the new
runner takes the task over where it was; its processes keep running) and no update repeats. After
`MAX_RUNNER_DEATHS` deaths within `RUNNER_DEATH_WINDOW` seconds it gives up with TASK_LOST.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from thermos.executor.checkers.base import (
    TASK_FAILED,
    TASK_FINISHED,
    TASK_KILLED,
    TASK_LOST,
    StatusChecker,
    StatusResult,
)

from thermos.common import statuses
from thermos.common.path import TaskPath
from thermos.gen.thermos.ttypes import ProcessState, RunnerState, TaskState
from thermos.monitoring.monitor import TaskMonitor

log = logging.getLogger(__name__)

MAX_WAIT = 60.0
POLL_INTERVAL = 0.02
MAX_RUNNER_DEATHS = 3
RUNNER_DEATH_WINDOW = 60.0

_EXIT_CODES = {
    statuses.UNKNOWN_USER: (TASK_FAILED, "Task started with unknown user."),
    statuses.INTERNAL_ERROR: (TASK_LOST, "Thermos failed with internal error."),
    statuses.INVALID_TASK: (TASK_FAILED, "Thermos received an invalid task."),
    statuses.UNKNOWN_ERROR: (TASK_LOST, "Thermos failed with an unknown error."),
    statuses.CHECKPOINT_ERROR: (TASK_LOST,
                                "Thermos could not write its checkpoint (disk full or read-only)."),
}
_TERMINAL = {TaskState.SUCCESS: (TASK_FINISHED, "Task finished."),
             TaskState.FAILED: (TASK_FAILED, "Task failed."),
             TaskState.KILLED: (TASK_KILLED, "Task killed."),
             TaskState.LOST: (TASK_LOST, "Task lost.")}


class TaskError(Exception):
    """The runner could not be started or stopped; str() is the one-line reason."""


class StartTimeout(TaskError):
    """The runner did not record the task in time (it was told to lose it)."""


def default_runner_command() -> list[str]:
    """`python -m thermos.runner`. In a zipapp pex file (pex's bootstrap sets $PEX to its path; thermos
    then lives outside the interpreter's prefix, so `-m` cannot find it) it is the same file again
    with its entry point switched to the runner, so an agent fetches one file for both."""
    pex = os.environ.get("PEX")
    installed = os.path.abspath(__file__).startswith(os.path.join(sys.prefix, ""))  # pex --venv
    if pex and os.path.isfile(pex) and not installed:
        return ["/usr/bin/env", "PEX_MODULE=thermos.runner", sys.executable, pex]
    return [sys.executable, "-m", "thermos.runner"]


@dataclass
class RunnerOptions:
    """The runner's command-line settings, as the executor's flags chose them."""

    checkpoint_root: str
    sandbox: str
    artifact_dir: str  # where task.json and the runner's own logs go (the Mesos sandbox)
    cwd: str  # $MESOS_DIRECTORY
    hostname: str | None = None
    setuid: str | None = None
    container_sandbox: str | None = None
    mesos_containerizer_path: str | None = None
    process_logger_destination: str | None = None
    process_logger_mode: str | None = None
    rotate_log_size_mb: int | None = None
    rotate_log_backups: int | None = None
    preserve_env: bool = False
    runner_command: list[str] = field(default_factory=default_runner_command)


class ThermosTaskRunner(StatusChecker):
    """Start, watch and stop one task's runner (spec §1.4)."""

    def __init__(self, task_id: str, task_json: str, ports: dict[str, int], options: RunnerOptions,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.task_id = task_id
        self.ports = dict(ports)
        self.options = options
        self._clock = clock
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._signalled: int | None = None  # the first of SIGUSR1/SIGUSR2 we sent
        self._deaths: list[float] = []
        self._status: StatusResult | None = None
        self.pathspec = TaskPath(root=options.checkpoint_root, task_id=task_id)
        self.task_json_path = os.path.join(options.artifact_dir, "task.json")
        try:
            os.makedirs(options.artifact_dir, exist_ok=True)
            with open(self.task_json_path, "w") as fp:
                fp.write(task_json)
        except OSError as e:
            raise TaskError("Failed to load task: could not write %s: %s"
                            % (self.task_json_path, e.strerror)) from None
        self._monitor = TaskMonitor(options.checkpoint_root, task_id)

    @property
    def name(self) -> str:
        return "thermos_runner"

    @property
    def runner_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def restarts(self) -> int:
        return len(self._deaths)

    def command(self) -> list[str]:
        o = self.options
        cmd = list(o.runner_command)
        for flag, value in (("log_dir", o.artifact_dir), ("checkpoint_root", o.checkpoint_root),
                            ("sandbox", o.sandbox), ("container_sandbox", o.container_sandbox),
                            ("task_id", self.task_id), ("thermos_json", self.task_json_path),
                            ("hostname", o.hostname),
                            ("process_logger_destination", o.process_logger_destination),
                            ("process_logger_mode", o.process_logger_mode),
                            ("rotate_log_size_mb", o.rotate_log_size_mb),
                            ("rotate_log_backups", o.rotate_log_backups), ("setuid", o.setuid),
                            ("mesos_containerizer_path", o.mesos_containerizer_path)):
            if value is not None:
                cmd.append("--%s=%s" % (flag, value))
        if o.preserve_env:
            cmd.append("--preserve_env")
        cmd += ["--port=%s:%d" % (name, port) for name, port in sorted(self.ports.items())]
        return cmd

    def _spawn(self) -> None:
        runs = len(self._deaths)
        out_path = os.path.join(self.options.artifact_dir, "thermos_runner.%d.out" % runs)
        try:
            with open(out_path, "wb") as out:
                self._proc = subprocess.Popen(self.command(), cwd=self.options.cwd, stdout=out,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True)
        except OSError as e:
            raise TaskError("Could not start thermos_runner: %s" % e) from None
        log.info("Started thermos_runner pid %d for %s", self._proc.pid, self.task_id)

    def _runner_output(self) -> str:
        path = os.path.join(self.options.artifact_dir, "thermos_runner.%d.out" % len(self._deaths))
        try:
            with open(path, errors="replace") as fp:
                lines = [ln for ln in fp.read().splitlines() if ln.startswith("thermos_runner:")]
        except OSError:
            return ""
        return lines[-1][len("thermos_runner:"):].strip() if lines else ""

    def start(self, timeout: float = MAX_WAIT) -> None:
        """Start the runner and wait until the task is recorded (active or finished)."""
        with self._lock:
            if self._proc is not None:
                return
            self._spawn()
        deadline = self._clock() + timeout
        active = self.pathspec.given(state="active").getpath("task_path")
        finished = self.pathspec.given(state="finished").getpath("task_path")
        while self._clock() < deadline:
            if os.path.exists(active) or os.path.exists(finished):
                return
            assert self._proc is not None
            rc = self._proc.poll()
            if rc is not None:
                if rc == 0:
                    return
                status = self.status
                why = self._runner_output() or (status.reason if status else "exit status %d" % rc)
                raise TaskError("Task failed: %s" % why)
            time.sleep(POLL_INTERVAL)
        self.lose()
        raise StartTimeout("Task did not start within deadline.")

    # -- status ------------------------------------------------------------------------------------
    @property
    def status(self) -> StatusResult | None:
        with self._lock:
            if self._status is not None:
                return self._status
            if self._proc is None:
                return None
            rc = self._proc.poll()
            if rc is None:
                return None
            result = self._exit_status(rc)
            if result is not None:
                self._status = result
            return result

    def _exit_status(self, rc: int) -> StatusResult | None:
        """What a runner exit means; None when the runner was restarted (task still ACTIVE)."""
        if rc < 0:
            state = self._task_state()
            if self._signalled is None and state in (None, TaskState.ACTIVE, TaskState.CLEANING,
                                                     TaskState.FINALIZING):
                return self._restart(-rc)
            if state in _TERMINAL:
                return self._checkpoint_result(state)
            return StatusResult("Task killed by signal %d." % -rc, TASK_KILLED)
        if rc in (0, statuses.TERMINAL_TASK):
            state = self._task_state()
            if state is None or state == TaskState.ACTIVE:
                return StatusResult("Runner died while task was active.", TASK_LOST)
            if state in _TERMINAL:
                return self._checkpoint_result(state)
            return StatusResult("Task checkpoint could not be read.", TASK_LOST)
        if rc in _EXIT_CODES:
            state, reason = _EXIT_CODES[rc]
            detail = self._runner_output()
            return StatusResult("%s%s" % (reason, (" " + detail) if detail else ""), state)
        return StatusResult("Thermos exited for unknown reason (exit status: %d)" % rc, TASK_LOST)

    def _restart(self, signum: int) -> StatusResult | None:
        now = self._clock()
        self._deaths = [t for t in self._deaths if now - t < RUNNER_DEATH_WINDOW] + [now]
        if len(self._deaths) >= MAX_RUNNER_DEATHS:
            log.error("thermos_runner died %d times within %.0fs; giving up", len(self._deaths),
                      RUNNER_DEATH_WINDOW)
            return StatusResult("thermos_runner died %d times within %.0f seconds (last by signal %d); "
                                "task lost." % (len(self._deaths), RUNNER_DEATH_WINDOW, signum), TASK_LOST)
        log.warning("thermos_runner (pid %s) died by signal %d while the task was active; restarting it",
                    self.runner_pid, signum)
        try:
            self._spawn()
        except TaskError as e:
            return StatusResult(str(e), TASK_LOST)
        return None

    def _state(self) -> RunnerState | None:
        try:
            self._monitor.refresh()
            return self._monitor.get_state()
        except Exception as e:  # noqa: BLE001 - a torn or unreadable checkpoint reads as "no state"
            log.warning("Could not read the runner checkpoint: %s", e)
            return None

    def _task_state(self) -> int | None:
        state = self._state()
        if state is None or not state.statuses:
            return None
        return state.statuses[-1].state

    def _checkpoint_result(self, task_state: int) -> StatusResult:
        mesos_state, reason = _TERMINAL[task_state]
        if task_state == TaskState.FAILED:
            detail = describe_failures(self._state())
            if detail:
                reason = "Task failed: %s." % detail
        return StatusResult(reason, mesos_state)

    # -- signals and stop -------------------------------------------------------------------------------
    def _signal(self, signum: int) -> None:
        with self._lock:
            if self._signalled is not None:
                return
            self._signalled = signum
            if self._proc is not None and self._proc.poll() is None:
                try:
                    os.kill(self._proc.pid, signum)
                except ProcessLookupError:
                    pass

    def kill(self) -> None:
        """SIGUSR1: the runner kills the task (KILLED, finalizers run). Only the first call acts."""
        self._signal(signal.SIGUSR1)

    def lose(self) -> None:
        """SIGUSR2: the runner loses the task (LOST, no finalizers). Only the first call acts."""
        self._signal(signal.SIGUSR2)

    def stop(self, timeout: float = MAX_WAIT) -> None:
        """Kill the task and wait (bounded) for the runner to record it; then, as a last resort, kill
        the task's processes from here (TaskRunnerHelper) and record KILLED."""
        if self._proc is None:
            raise TaskError("Task was never started.")
        deadline = self._clock() + timeout
        self.kill()
        while self._clock() < deadline:
            status = self.status
            proc = self._proc
            if status is not None or (proc is not None and proc.poll() is not None):
                break
            time.sleep(POLL_INTERVAL)
        if self._task_state() in _TERMINAL and self._proc.poll() is not None:
            return
        log.warning("thermos_runner did not finish the kill; killing the task's processes directly")
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self._proc.wait(timeout=5)
        from thermos.core.helper import TaskRunnerHelper  # the last resort only (ARCHITECTURE.md)

        with self._lock:
            lost = self._status is not None and self._status.status == TASK_LOST
        try:
            TaskRunnerHelper.kill(self.task_id, self.options.checkpoint_root, force=True,
                                  terminal_status=TaskState.LOST if lost else TaskState.KILLED)
        except Exception as e:  # noqa: BLE001 - reported as a stop failure below
            log.error("Last-resort kill failed: %s", e)
        finished = self.pathspec.given(state="finished").getpath("task_path")
        while self._clock() < deadline and not os.path.exists(finished):
            time.sleep(POLL_INTERVAL)
        if not os.path.exists(finished):
            raise TaskError("Task did not stop within deadline.")
        with self._lock:
            state = self._task_state()
            if self._status is None and state in _TERMINAL:
                self._status = self._checkpoint_result(state)

    def task_terminal(self) -> bool:
        """Whether the checkpoint records the task as ended (whatever became of the runner)."""
        return self._task_state() in _TERMINAL


def describe_failures(state: RunnerState | None) -> str:
    """`process 'server' failed with return code 3 (run 2)` for each process whose last run failed."""
    if state is None or not state.processes:
        return ""
    parts = []
    for name, runs in sorted(state.processes.items()):
        if not runs:
            continue
        last = runs[-1]
        if last.state == ProcessState.FAILED:
            parts.append("process '%s' failed with return code %s (run %d)" % (
                name, last.return_code, len(runs)))
        elif last.state == ProcessState.LOST:
            parts.append("process '%s' was lost (run %d)" % (name, len(runs)))
    return "; ".join(parts)
