"""AuroraExecutor: the one place that decides every status update of the task (spec §1.2).

Driver callbacks only record what was asked and hand work to a lifecycle thread; the task's updates
are STARTING, then RUNNING once every checker agrees, then exactly one terminal update whose message
says why. Every failure is one TASK_FAILED (or LOST) line, never a traceback.

Deliberate differences from Aurora:
* a kill during sandbox initialisation ends with STARTING, KILLED and the runner is never started
  (Aurora sent KILLED and then started the runner anyway);
* when the runner had already ended the task before a kill or a checker's verdict, the terminal
  update carries the runner's reason, so the message matches the state (Aurora sent e.g. FINISHED
  with "Instructed to kill task.");
* the executor exits only once its terminal update is acknowledged (bounded), not after a fixed 5 s.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from thermos.executor.checkers.base import (
    TASK_FAILED,
    TASK_KILLED,
    TASK_LOST,
    TASK_RUNNING,
    TASK_STARTING,
    TERMINAL_STATES,
    ChainedStatusChecker,
    StatusChecker,
    StatusCheckerProvider,
    StatusResult,
)
from thermos.executor.checkers.kill import KillManager
from thermos.executor.driver import Executor, ExecutorDriver, MesosEnvironment, decode_data
from thermos.executor.http_lifecycle import graceful_shutdown
from thermos.executor.sandbox import (
    DirectorySandbox,
    DockerDirectorySandbox,
    FileSystemImageSandbox,
    SandboxError,
)
from thermos.executor.status_manager import StatusManager
from thermos.executor.task_info import (
    ExecutorTask,
    TaskInfoError,
    decode_assigned_task,
    executor_task_from_assigned_task,
)
from thermos.executor.thermos_task_runner import RunnerOptions, StartTimeout, TaskError, ThermosTaskRunner

from thermos.gen.aurora.ttypes import AssignedTask

log = logging.getLogger(__name__)

T = TypeVar("T")


class Timeout(Exception):
    """A deadline passed; the work goes on in its daemon thread."""


def deadline(function: Callable[[], T], timeout: float, name: str) -> T:
    """Run `function` in a daemon thread; its result, its exception, or Timeout after `timeout`."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise Timeout(name)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")  # type: ignore[return-value]


@dataclass
class ExecutorOptions:
    """The executor's settings (its command-line flags, spec §2)."""

    checkpoint_root: str | None = None  # default <MESOS_SANDBOX>/checkpoints
    execute_as_user: str | None = None
    nosetuid: bool = False
    mesos_containerizer_path: str = "/usr/libexec/mesos/mesos-containerizer"
    sandbox_mount_point: str = "/mnt/mesos/sandbox"
    no_create_user: bool = False
    runner_logger_destination: str | None = None
    runner_logger_mode: str | None = None
    runner_rotate_log_size_mb: int | None = None
    runner_rotate_log_backups: int | None = None
    preserve_env: bool = False
    stop_timeout_in_secs: float = 120.0
    sandbox_timeout: float = 600.0
    start_timeout: float = 120.0
    launch_timeout: float = 10.0  # ExecutorTimeout: no LAUNCH by then -> exit
    ack_wait: float = 5.0  # bounded wait for the terminal update's acknowledgement while connected
    poll_interval: float = 0.05
    runner_command: list[str] | None = None


class AuroraExecutor(Executor):
    """Runs one Aurora task under thermos_runner; see the module docstring."""

    def __init__(self, env: MesosEnvironment, options: ExecutorOptions | None = None,
                 providers: Sequence[StatusCheckerProvider] = ()) -> None:
        self.env = env
        self.options = options or ExecutorOptions()
        self.providers = list(providers)
        self.kill_manager = KillManager()
        self.launched = threading.Event()
        self.sandbox_created = threading.Event()
        self.runner_started = threading.Event()
        self.terminated = threading.Event()  # the terminal update was sent
        self.finished = threading.Event()  # nothing left to do: main may exit
        self._lock = threading.RLock()
        self._driver: ExecutorDriver | None = None
        self._task_id: str | None = None
        self._aborted = False  # killed before the runner existed
        self._terminal_sent = False
        self._runner: ThermosTaskRunner | None = None
        self._checkers: ChainedStatusChecker | None = None
        self._status_manager: StatusManager | None = None
        self.task: ExecutorTask | None = None

    # -- updates -------------------------------------------------------------------------------------
    def _send(self, state: str, message: str | None = None, task_id: str | None = None) -> None:
        """The only path to the driver: at most one terminal update for the task, none after it."""
        tid = task_id or self._task_id
        assert tid is not None and self._driver is not None
        with self._lock:
            if tid == self._task_id:
                if self._terminal_sent:
                    log.info("Not sending %s for %s: already terminal", state, tid)
                    return
                if state in TERMINAL_STATES:
                    self._terminal_sent = True
        self._driver.send_status_update(tid, state, message or None)
        if tid == self._task_id and state in TERMINAL_STATES:
            self.terminated.set()

    def _die(self, state: str, message: str) -> None:
        """Send the terminal update, then stop the driver once it is acknowledged (bounded)."""
        self._send(state, message)
        threading.Thread(target=self._exit_after_ack, name="exit", daemon=True).start()

    def _exit_after_ack(self) -> None:
        driver = self._driver
        assert driver is not None
        while not driver.wait_acknowledged(self.options.ack_wait):
            if driver.stop_reason is not None:
                log.warning("Exiting without an acknowledgement: %s", driver.stop_reason)
                break
            if getattr(driver, "connected", True):
                log.warning("Terminal update not acknowledged within %.0fs; exiting", self.options.ack_wait)
                break
            log.info("Waiting for the agent to come back to deliver the terminal update")
        driver.stop()
        self.finished.set()

    # -- driver callbacks ------------------------------------------------------------------------------
    def registered(self, driver: ExecutorDriver, executor_info: dict[str, Any],
                   framework_info: dict[str, Any], agent_info: dict[str, Any]) -> None:
        self._driver = driver
        log.info("Registered with agent %s", agent_info.get("hostname"))
        threading.Thread(target=self._launch_timeout, name="executor-timeout", daemon=True).start()

    def reregistered(self, driver: ExecutorDriver, agent_info: dict[str, Any]) -> None:
        self._driver = driver
        log.info("Re-registered with agent %s", agent_info.get("hostname"))

    def _launch_timeout(self) -> None:
        if not self.launched.wait(self.options.launch_timeout):
            log.warning("Executor timing out.")
            assert self._driver is not None
            self._driver.stop()
            self.finished.set()

    def launchTask(self, driver: ExecutorDriver, task: dict[str, Any]) -> None:  # noqa: N802
        self._driver = driver
        task_id = task["task_id"]["value"]
        with self._lock:
            current = self._task_id
            if current is None:
                self._task_id = task_id
        if current is not None:
            log.error("Task %s launched while %s is running", task_id, current)
            self._send(TASK_LOST, "Task already running on this executor: %s" % current, task_id=task_id)
            return
        self.launched.set()
        log.info("Launching task %s", task_id)
        try:
            assigned = decode_assigned_task(decode_data(task.get("data") or ""))
        except (TaskInfoError, ValueError) as e:
            message = str(e) if isinstance(e, TaskInfoError) else "Could not deserialize task."
            log.error("Task %s: %s", task_id, message)
            self._die(TASK_FAILED, message)
            return
        threading.Thread(target=self._run_safely, args=(assigned,), name="lifecycle", daemon=True).start()

    def killTask(self, driver: ExecutorDriver, task_id: str) -> None:  # noqa: N802
        log.info("Kill requested for %s", task_id)
        if task_id != self._task_id:
            log.warning("Kill of unknown task %s (running: %s); ignored", task_id, self._task_id)
            return
        self._kill("Instructed to kill task.")

    def shutdown(self, driver: ExecutorDriver) -> None:
        log.info("Shutdown requested")
        if self._task_id is None:
            driver.stop()
            self.finished.set()
            return
        self._kill("Told to shut down executor.")

    def _kill(self, reason: str) -> None:
        with self._lock:
            if not self.sandbox_created.is_set() or self._runner is None:
                self._aborted = True
        self.kill_manager.kill(reason)

    # -- the lifecycle thread ------------------------------------------------------------------------
    def _run_safely(self, assigned: AssignedTask) -> None:
        try:
            self._run(assigned)
        except Exception:
            log.exception("Internal error running the task")
            self._die(TASK_FAILED, "Internal error")

    def _run(self, assigned: AssignedTask) -> None:
        self._send(TASK_STARTING)
        try:
            task = executor_task_from_assigned_task(assigned)
        except TaskInfoError as e:
            self._die(TASK_FAILED, str(e))
            return
        self.task = task
        try:
            sandbox = self._sandbox(task)
        except SandboxError as e:
            self._die(TASK_FAILED, str(e))
            return
        try:
            deadline(sandbox.create, self.options.sandbox_timeout, "sandbox")
        except Timeout:
            self._die(TASK_FAILED, "Timed out waiting for sandbox to initialize!")
            return
        except SandboxError as e:
            self._die(TASK_FAILED, "Failed to initialize sandbox: %s" % e)
            return
        except Exception as e:
            self._die(TASK_FAILED, "Unknown exception initializing sandbox: %s" % e)
            return
        with self._lock:
            aborted = self._aborted
            if not aborted:
                self.sandbox_created.set()
        if aborted:
            self._die(TASK_KILLED, "Task killed during initialization.")
            return
        try:
            runner = ThermosTaskRunner(task.task_id, task.task_json, task.ports,
                                       self._runner_options(task, sandbox))
        except TaskError as e:
            self._die(TASK_FAILED, str(e))
            return
        with self._lock:
            self._runner = runner
            aborted = self._aborted
        if aborted:
            self._die(TASK_KILLED, "Task killed during initialization.")
            return
        try:
            runner.start(timeout=self.options.start_timeout)
        except StartTimeout:
            self._die(TASK_LOST, "Timed out waiting for task to start!")
            return
        except TaskError as e:
            self._die(TASK_FAILED, "Task initialization failed: %s" % e)
            return
        self.runner_started.set()
        self._start_status_manager(task, sandbox, runner)

    def _sandbox(self, task: ExecutorTask) -> DirectorySandbox:
        o = self.options
        if task.docker_image is not None:
            return DockerDirectorySandbox(self.env.directory, self.env.sandbox)
        user = o.execute_as_user or (None if o.nosetuid else task.role)
        if task.filesystem_image is not None:
            path = o.mesos_containerizer_path
            if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
                raise SandboxError("Cannot launch task using a filesystem image: mesos-containerizer %r is "
                                   "missing or not executable (--mesos-containerizer-path)" % path)
            mesos = task.container.mesos
            volumes = [v.containerPath for v in (mesos.volumes or [])] if mesos is not None else []
            return FileSystemImageSandbox(self.env.directory, user, o.sandbox_mount_point, volumes,
                                          o.no_create_user)
        return DirectorySandbox(self.env.directory, user)

    def _runner_options(self, task: ExecutorTask, sandbox: DirectorySandbox) -> RunnerOptions:
        o = self.options
        setuid = None
        if os.geteuid() == 0 and not o.nosetuid and not o.execute_as_user and task.docker_image is None:
            setuid = task.role
        image = isinstance(sandbox, FileSystemImageSandbox)
        options = RunnerOptions(
            checkpoint_root=o.checkpoint_root or os.path.join(os.path.abspath(self.env.sandbox),
                                                              "checkpoints"),
            sandbox=sandbox.root, artifact_dir=self.env.sandbox, cwd=self.env.directory,
            hostname=task.hostname or None, setuid=setuid,
            container_sandbox=sandbox.container_root if image else None,
            mesos_containerizer_path=o.mesos_containerizer_path if image else None,
            process_logger_destination=o.runner_logger_destination, process_logger_mode=o.runner_logger_mode,
            rotate_log_size_mb=o.runner_rotate_log_size_mb, rotate_log_backups=o.runner_rotate_log_backups,
            preserve_env=o.preserve_env)
        if o.runner_command:
            options.runner_command = list(o.runner_command)
        return options

    def _start_status_manager(self, task: ExecutorTask, sandbox: DirectorySandbox,
                              runner: ThermosTaskRunner) -> None:
        checkers: list[StatusChecker] = [self.kill_manager]
        try:
            for provider in self.providers:
                checker = provider.from_task(task, sandbox.root if sandbox.exists() else None)
                if checker is not None:
                    checkers.append(checker)
            chained = ChainedStatusChecker(checkers)
            chained.start()
        except Exception as e:
            log.exception("Could not start the status checkers")
            self._checkers = ChainedStatusChecker(checkers)
            self._shutdown(StatusResult("Internal error: could not start status checkers: %s" % e,
                                        TASK_FAILED))
            return
        self._checkers = chained
        complete = ChainedStatusChecker([runner, chained])
        self._status_manager = StatusManager(complete, self._on_running, self._shutdown,
                                             interval=self.options.poll_interval)
        self._status_manager.start()

    def _on_running(self, result: StatusResult) -> None:
        self._send(TASK_RUNNING, result.reason)

    def _shutdown(self, result: StatusResult) -> None:
        """Stop checkers (the announcement is withdrawn first), then the task, all bounded by
        --stop_timeout_in_secs; send the one terminal update; exit once it is acknowledged."""
        runner = self._runner
        assert runner is not None
        runner_status = runner.status
        budget = self.options.stop_timeout_in_secs
        started = time.monotonic()
        if self._checkers is not None:
            try:
                deadline(self._checkers.stop, budget, "stop-checkers")
            except Timeout:
                log.error("Status checkers did not stop within %.0fs", budget)
            except Exception:
                log.exception("Stopping the status checkers failed")
        # Also when the runner ended without recording the task's end (it died): its processes may live.
        if runner_status is None or not runner.task_terminal():
            left = max(1.0, budget - (time.monotonic() - started))
            try:
                deadline(lambda: self._stop_task(runner, left), left, "stop-task")
            except Timeout:
                log.error("The task did not stop within %.0fs", budget)
            except Exception as e:
                log.error("Stopping the task failed: %s", e)
        final = runner_status or result
        self._die(final.status, final.reason or "")

    def _stop_task(self, runner: ThermosTaskRunner, budget: float) -> None:
        """The HTTP lifecycle endpoints first (when the task has them), then the runner's kill."""
        end = time.monotonic() + budget
        task = self.task
        if task is not None and task.http_lifecycle is not None:
            graceful_shutdown(task.http_lifecycle, lambda: runner.status is not None, deadline=end)
        runner.stop(timeout=max(1.0, end - time.monotonic()))
