"""thermos_runner: run one task from its JSON config until it is terminal (spec thermos.md §10.1).

Exit codes (thermos.common.statuses): 0 when the task reached a terminal state (whatever it was:
the checkpoint says which), 101 internal error or missing ports, 102 invalid task (including a
task without processes), 103 unknown error, 104 unknown user, 105 the task had already finished
before this runner started (nothing was run), 106 checkpoint write failed. Every failure is
one line on stderr. Signals: SIGUSR1 kills the task (KILLED, with a 60 s preemption wait),
SIGUSR2 loses it (LOST, no wait), SIGINT/SIGTERM kill it like SIGUSR1; SIGHUP and SIGALRM are
ignored (a closed terminal must not orphan the task).
"""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import signal
import sys
from collections.abc import Sequence

from thermos.common import statuses
from thermos.common.options import ParseError, parse_port
from thermos.common.planner import CappedTaskPlanner
from thermos.gen.thermos.ttypes import TaskState

log = logging.getLogger("thermos_runner")

PREEMPTION_WAIT = 60.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="thermos_runner", description="Run a Thermos task to completion.")
    p.add_argument("--thermos_json", required=True,
                   help="the task as JSON: 'thermos inspect --task-json CONFIG' writes it from a .thermos "
                        "file (the executor writes it from the Mesos task)")
    p.add_argument("--sandbox", required=True, help="directory the processes run in")
    p.add_argument("--container_sandbox", default=None, help="the sandbox as seen inside a container")
    p.add_argument("--checkpoint_root", required=True, help="root of checkpoints and task records")
    p.add_argument("--task_id", default=None)
    p.add_argument("--setuid", default=None, metavar="USER", help="run the processes as USER")
    p.add_argument("--enable_chroot", action="store_true", default=False)
    p.add_argument("--mesos_containerizer_path", default=None)
    p.add_argument("--preserve_env", action="store_true", default=False)
    p.add_argument("--allow_setuid_binaries", action="store_true", default=False,
                   help="let the task's processes gain privileges through setuid binaries such as sudo "
                        "(by default they run with no_new_privs)")
    p.add_argument("--port", action="append", default=[], metavar="NAME:PORT", dest="ports")
    p.add_argument("--hostname", default=None)
    p.add_argument("--process_logger_destination", default=None,
                   choices=["file", "console", "both", "none"])
    p.add_argument("--process_logger_mode", default=None, choices=["standard", "rotate"])
    p.add_argument("--rotate_log_size_mb", type=int, default=None)
    p.add_argument("--rotate_log_backups", type=int, default=None)
    p.add_argument("--log_dir", default=None, help="directory for the runner's own log")
    p.add_argument("--verbose", "-v", action="store_true", default=False)
    p.add_argument("--dump_state", default=None, help=argparse.SUPPRESS)  # tests: final RunnerState
    return p


def fail(code: int, message: str) -> int:
    print("thermos_runner: %s" % message, file=sys.stderr)
    return code


def open_runner_log(log_dir: str) -> logging.Handler:
    """The runner's own log file; the directory often lies in the task's sandbox, so it is reached
    without following symlinks and an existing file must be a single-link file of ours."""
    from thermos.common import safe_fs

    dir_fd = safe_fs.open_dir(log_dir, create_mode=0o755)
    try:
        fd, _ = safe_fs.open_file_at(dir_fd, "thermos_runner.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                     0o644)
    finally:
        os.close(dir_fd)
    return logging.StreamHandler(os.fdopen(fd, "a", buffering=1))


def setup_logging(log_dir: str | None, verbose: bool) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir:
        handlers.append(open_runner_log(log_dir))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A closed terminal or a stray alarm must not kill the runner and orphan the task's processes.
    for sig in (signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, signal.SIG_IGN)
    try:
        setup_logging(args.log_dir, args.verbose)
    except OSError as err:
        return fail(statuses.INTERNAL_ERROR, "cannot open the runner log in %s: %s (--log_dir)" % (
            args.log_dir, err))

    # Imported here so that `thermos_runner --help` stays fast.
    from thermos.config.loader import ConfigError, ThermosConfigLoader, describe_config_error
    from thermos.core.process import Process
    from thermos.core.runner import TaskRunner

    if not os.path.exists(args.thermos_json):
        return fail(statuses.INVALID_TASK, "task file %s does not exist" % args.thermos_json)
    try:
        loader = ThermosConfigLoader.load_json(args.thermos_json)
    except (ConfigError, OSError, ValueError) as err:
        return fail(statuses.INVALID_TASK, describe_config_error(err))
    tasks = loader.tasks()
    if not tasks and getattr(loader, "load_error", None) is not None:
        return fail(statuses.INVALID_TASK, describe_config_error(loader.load_error))
    if len(tasks) != 1:
        return fail(statuses.INVALID_TASK, "%s holds %d tasks; expected exactly one (is it task JSON?)" % (
            args.thermos_json, len(tasks)))
    task = tasks[0]

    try:
        portmap = dict(parse_port(spec) for spec in args.ports)
    except ParseError as err:
        return fail(statuses.INTERNAL_ERROR, str(err))
    missing = sorted(set(task.ports()) - set(portmap))
    if missing:
        return fail(statuses.INTERNAL_ERROR, "unbound ports %s: pass --port NAME:PORT for each" % (
            ", ".join(missing)))

    user = args.setuid
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            return fail(statuses.UNKNOWN_USER, "unknown user %r (--setuid): no such account on this host"
                        % user)

    try:
        runner = TaskRunner(
            task.task, args.checkpoint_root, args.sandbox, task_id=args.task_id, portmap=portmap,
            user=user, chroot=args.enable_chroot, planner_class=CappedTaskPlanner,
            hostname=args.hostname, process_logger_destination=args.process_logger_destination,
            process_logger_mode=args.process_logger_mode, rotate_log_size_mb=args.rotate_log_size_mb,
            rotate_log_backups=args.rotate_log_backups, preserve_env=args.preserve_env,
            mesos_containerizer_path=args.mesos_containerizer_path,
            container_sandbox=args.container_sandbox, no_new_privs=not args.allow_setuid_binaries)
    except TaskRunner.InvalidTask as err:
        return fail(statuses.INVALID_TASK, str(err))
    except TaskRunner.InternalError as err:
        return fail(statuses.INTERNAL_ERROR, str(err))
    except ValueError as err:
        return fail(statuses.INVALID_TASK, str(err))

    # Aurora exited 0 on a finished task without a word; the README promises 105 (and the
    # executor reads 105 as 0). run() then returns at once, having only finished what a runner
    # killed right after its last record left undone.
    already_terminal = runner.is_terminal
    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGUSR2:
            runner.request_kill(TaskState.LOST, 0.0)
        else:
            runner.request_kill(TaskState.KILLED, PREEMPTION_WAIT)

    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    code = 0
    try:
        runner.run()
    except TaskRunner.StateError as err:
        code = fail(statuses.TERMINAL_TASK, str(err))
    except TaskRunner.InvalidTask as err:
        code = fail(statuses.INVALID_TASK, str(err))
    except Process.UnknownUserError as err:
        code = fail(statuses.UNKNOWN_USER, str(err))
    except TaskRunner.CheckpointError as err:
        code = fail(statuses.CHECKPOINT_ERROR, "checkpoint write failed, stopping: %s "
                    "(free space or fix permissions under %s, then start the runner again)" % (
                        err, args.checkpoint_root))
    except TaskRunner.Error as err:  # internal, permission (lock held), sandbox creation
        code = fail(statuses.INTERNAL_ERROR, str(err))
    except Exception as err:  # noqa: BLE001 - the exit code is the executor's only signal
        log.exception("Unexpected error in the run loop")
        code = fail(statuses.UNKNOWN_ERROR, "unexpected error: %s: %s" % (type(err).__name__, err))
    finally:
        if args.dump_state:
            dump_state(runner, args.dump_state)
    if already_terminal and code == 0:
        code = fail(statuses.TERMINAL_TASK, "task %s already finished %s under %s; nothing was run" % (
            runner.task_id, TaskState._VALUES_TO_NAMES.get(runner.task_state, runner.task_state),
            args.checkpoint_root))
    return code


def dump_state(runner: object, path: str) -> None:
    from thermos.common.recordio import ThriftCodec
    from thermos.gen.thermos.ttypes import RunnerState

    with open(path, "wb") as fp:
        fp.write(ThriftCodec(RunnerState).encode(runner.state))  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
