"""Running a task in the foreground (or daemonized) for `thermos run` and `thermos simplerun`.

The task runs in this process under a TaskRunner, exactly as thermos_runner would run it, with
its checkpoint under --root. Ctrl-C, SIGTERM, or SIGHUP when the terminal closes kill the task
gracefully: CLEANING, then the finalizers, within the preemption wait. At the end a short
report says how the task and each of its processes ended and where their logs are.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from thermos.cli.common import CommandError

PREEMPTION_WAIT = 60.0


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
             sandbox: str | None = None) -> int:
    from thermos.config.loader import ConfigError, describe_config_error
    from thermos.core.runner import TaskRunner
    from thermos.gen.thermos.ttypes import TaskState

    missing = sorted(set(_required_ports(task)) - set(prebound_ports))
    if missing:
        raise CommandError("ERROR!  Unbound ports: %s (bind each with -P NAME:PORT)" % " ".join(missing))
    if user is not None:
        import pwd

        try:
            pwd.getpwnam(user)
        except KeyError:
            raise CommandError("unknown user %r (--user): no such account on this host" % user) from None
    task_id = task_id or default_task_id(task.name().get())
    if sandbox is None:
        sandbox = os.path.join(sandbox_root or "/var/lib/thermos/sandbox", task_id)
    try:
        runner = TaskRunner(task, root, sandbox, task_id=task_id, portmap=prebound_ports, user=user,
                            chroot=chroot)
    except (TaskRunner.InvalidTask, ConfigError) as err:
        raise CommandError(describe_config_error(err)) from None
    except ValueError as err:
        raise CommandError(str(err)) from None

    if daemon:
        print("Daemonizing and starting runner.")
        sys.stdout.flush()
        daemonize()
    else:
        print("Running task %s (checkpoint root %s, sandbox %s)" % (task_id, root, sandbox))
        sys.stdout.flush()

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGINT:
            print("Got keyboard interrupt, killing job!", file=sys.stderr)
        elif signum == signal.SIGHUP and not daemon:
            print("Terminal closed (SIGHUP), killing job!", file=sys.stderr)
        runner.request_kill(TaskState.KILLED, PREEMPTION_WAIT)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, on_signal)
    # A closed terminal kills a foreground task gracefully (as Ctrl-C does); a daemon has no
    # terminal and ignores it. A stray SIGALRM must never end the runner without cleanup.
    signal.signal(signal.SIGHUP, signal.SIG_IGN if daemon else on_signal)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    try:
        runner.run()
    except TaskRunner.Error as err:
        raise CommandError("task %s: %s" % (task_id, err), code=2) from None
    if not daemon:
        report(runner)
    return 0


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
