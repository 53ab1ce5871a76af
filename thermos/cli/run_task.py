"""Running a task in the foreground (or daemonized) for `thermos run` and `thermos simplerun`.

The task runs in this process under a TaskRunner, exactly as thermos_runner would run it, with
its checkpoint under --root. Ctrl-C, SIGTERM, SIGUSR1, or SIGHUP when the terminal closes kill
the task gracefully: CLEANING, then the finalizers, within the preemption wait; SIGUSR2 loses it
(LOST, at once), as it does to thermos_runner. At the end a short
report says how the task and each of its processes ended and where their logs are.

The exit status follows the task's final state, so scripts can trust it (`EXIT_CODES`): 0 SUCCESS,
1 FAILED, 3 KILLED, 4 LOST. A task that could not be run exits with thermos_runner's codes: 101
internal error or unbound ports, 102 invalid config or task, 104 unknown user, 105 the task id has
already finished (nothing was run), 106 a checkpoint write failed. Aurora's `thermos run` exited 0
whatever happened to the task.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from thermos.cli.common import CommandError
from thermos.common import statuses

PREEMPTION_WAIT = 60.0

# The exit status of a task that ran, by its final TaskState name.
EXIT_CODES = {"SUCCESS": 0, "FAILED": 1, "KILLED": 3, "LOST": 4}


def daemonize() -> None:
    """Double-fork into a new session with stdio on /dev/null (Aurora's --daemon)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def default_task_id(name: str) -> str:
    now = time.time()
    return "%s-%s.%06d" % (name, time.strftime("%Y%m%d-%H%M%S", time.localtime(now)), int((now % 1) * 1e6))


def run_task(task: Any, root: str, sandbox_root: str | None, task_id: str | None, user: str | None,
             prebound_ports: dict[str, int], chroot: bool = False, daemon: bool = False,
             sandbox: str | None = None, source: str | None = None) -> int:
    """Run `task` to its end and return the exit status (`EXIT_CODES`); CommandError if it cannot run.

    `source` names the config file, for error messages.
    """
    from thermos.config.loader import ConfigError, ThermosTaskValidator, describe_config_error
    from thermos.core.runner import TaskRunner
    from thermos.gen.thermos.ttypes import TaskState

    missing = sorted(set(_required_ports(task)) - set(prebound_ports))
    if missing:
        raise CommandError("ERROR!  Unbound ports: %s (bind each with -P NAME:PORT)" % " ".join(missing),
                           code=statuses.INTERNAL_ERROR)
    if user is not None:
        import pwd

        try:
            pwd.getpwnam(user)
        except KeyError:
            raise CommandError("unknown user %r (--user): no such account on this host" % user,
                               code=statuses.UNKNOWN_USER) from None
    try:  # the runner validates too, but does not know which file the task came from
        ThermosTaskValidator.assert_valid_task(task, source=source)
    except ConfigError as err:
        raise CommandError(describe_config_error(err, source=source), code=statuses.INVALID_TASK) from None
    task_id = task_id or default_task_id(task.name().get())
    if sandbox is None:
        sandbox = os.path.join(sandbox_root or "/var/lib/thermos/sandbox", task_id)
    try:
        runner = TaskRunner(task, root, sandbox, task_id=task_id, portmap=prebound_ports, user=user,
                            chroot=chroot)
    except (TaskRunner.InvalidTask, ConfigError, ValueError) as err:
        raise CommandError(describe_config_error(err, source=source), code=statuses.INVALID_TASK) from None
    except TaskRunner.Error as err:
        raise CommandError("task %s: %s" % (task_id, err), code=_error_code(err)) from None
    if runner.is_terminal:
        runner.run()  # only settles what a runner killed at the very end left undone
        raise CommandError("task %s already finished %s under %s; nothing was run (pick a new --task_id)" % (
            task_id, TaskState._VALUES_TO_NAMES[runner.task_state], root), code=statuses.TERMINAL_TASK)

    if daemon:
        print("Daemonizing and starting runner.")
        sys.stdout.flush()
        daemonize()
    else:
        print("Running task %s (checkpoint root %s, sandbox %s)" % (task_id, root, sandbox))
        sys.stdout.flush()

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGUSR2:  # as thermos_runner: the task is lost, no finalizers
            runner.request_kill(TaskState.LOST, 0.0)
            return
        if signum == signal.SIGINT:
            print("Got keyboard interrupt, killing job!", file=sys.stderr)
        elif signum == signal.SIGHUP and not daemon:
            print("Terminal closed (SIGHUP), killing job!", file=sys.stderr)
        runner.request_kill(TaskState.KILLED, PREEMPTION_WAIT)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, on_signal)
    # A closed terminal kills a foreground task gracefully (as Ctrl-C does); a daemon has no
    # terminal and ignores it. A stray SIGALRM must never end the runner without cleanup.
    signal.signal(signal.SIGHUP, signal.SIG_IGN if daemon else on_signal)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    try:
        runner.run()
    except TaskRunner.Error as err:
        raise CommandError("task %s: %s" % (task_id, err), code=_error_code(err)) from None
    except Exception as err:
        from thermos.core.process import Process

        if isinstance(err, Process.UnknownUserError):
            raise CommandError("task %s: %s" % (task_id, err), code=statuses.UNKNOWN_USER) from None
        raise
    if not daemon:
        report(runner)
    return EXIT_CODES.get(TaskState._VALUES_TO_NAMES.get(runner.task_state, ""), statuses.UNKNOWN_ERROR)


def _error_code(err: Exception) -> int:
    """thermos_runner's exit code for a TaskRunner error."""
    from thermos.core.runner import TaskRunner

    for error_class, code in ((TaskRunner.StateError, statuses.TERMINAL_TASK),
                              (TaskRunner.InvalidTask, statuses.INVALID_TASK),
                              (TaskRunner.CheckpointError, statuses.CHECKPOINT_ERROR)):
        if isinstance(err, error_class):
            return code
    return statuses.INTERNAL_ERROR


def _required_ports(task: Any) -> list[str]:
    from thermos.config.loader import ThermosTaskWrapper

    return sorted(ThermosTaskWrapper(task, strict=False).ports())


def report(runner: Any) -> None:
    """How the task ended, one line per process with its last run and logs."""
    from thermos.gen.thermos.ttypes import ProcessState, TaskState

    state = runner.state
    print("Task %s finished: %s" % (runner.task_id, TaskState._VALUES_TO_NAMES[runner.task_state]))
    log_dir = state.header.log_dir if state.header else None
    for name, runs in state.processes.items():
        last = runs[-1]
        rc = "" if last.return_code is None else " rc=%d" % last.return_code
        logs = os.path.join(log_dir, name, str(len(runs) - 1)) if log_dir else "?"
        print("  %-20s %-8s runs=%d%s  logs: %s" % (
            name, ProcessState._VALUES_TO_NAMES.get(last.state, "?"), len(runs), rc, logs))
