"""Kill task(s).

Usage: thermos kill [--yes] [--wait SECONDS] task_regex [task_regex ...]

Each argument is a regular expression, matched with re.match (so a prefix matches) against the
active task ids of every checkpoint root. When any matched task is not named exactly by an
argument, the matches are listed and you are asked to confirm (--yes skips the question).

A task whose runner is alive is killed by that runner: it gets SIGUSR1, as the executor sends,
and stops the task its usual way (finalizers included); `thermos kill` waits up to --wait seconds
for the task to end. Only a runner that is gone, stopped or still running after the wait is
taken over: its processes are killed here, the task is recorded KILLED and moved to the finished
tasks.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from thermos.cli.common import CommandError, add_command_parser, get_path_detector, roots_text, tasks_from_re
from thermos.common.path import TaskPath

if TYPE_CHECKING:
    import psutil

NAME = "kill"

# The runner gives the task's finalizers up to 60 s after SIGUSR1; wait a little longer.
DEFAULT_WAIT = 70.0
POLL_INTERVAL = 0.05


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, NAME, __doc__)
    parser.add_argument("-y", "--yes", "--force", dest="yes", action="store_true",
                        help="kill every match without asking (for scripts)")
    parser.add_argument("--wait", type=_seconds, default=DEFAULT_WAIT, metavar="SECONDS",
                        help="how long a live runner may take to stop its task before it is taken "
                             "over (default: %g)" % DEFAULT_WAIT)
    parser.add_argument("regexes", nargs="*", metavar="task_regex")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError("expected a number of seconds, got %r" % text)
    return value


def run(args: argparse.Namespace) -> int:
    if not args.regexes:
        raise CommandError("Must specify tasks! (e.g. thermos kill 'hello_world.*'; "
                           "'thermos status --only active' lists them)")
    detector = get_path_detector(args)
    matched = tasks_from_re(args.regexes, detector, state="active")
    if not matched:
        raise CommandError("No active tasks matched %s in %s ('thermos status --only active' lists them)" % (
            " ".join(repr(r) for r in args.regexes), roots_text(detector)))
    if not args.yes and not all(task_id in args.regexes for _, task_id in matched):
        confirm(args.regexes, matched)

    failed = 0
    for root, task_id in matched:
        print("Killing %s..." % task_id, end="", flush=True)
        try:
            note = kill_task(root, task_id, args.wait)
        except Exception as err:  # noqa: BLE001 - report each task's failure as one line, go on
            print("failed.")
            print("thermos kill: error: could not kill %s in %s: %s" % (task_id, root, err), file=sys.stderr)
            failed += 1
            continue
        if os.path.exists(TaskPath(root=root, task_id=task_id, state="active").getpath("task_path")):
            print("failed.")
            print("thermos kill: error: %s is still active in %s; its checkpoint may be unreadable "
                  "(see 'thermos read %s')" % (task_id, root, TaskPath(root=root, task_id=task_id).getpath(
                      "runner_checkpoint")), file=sys.stderr)
            failed += 1
            continue
        print("done.")
        if note:
            print("thermos kill: %s: %s" % (task_id, note), file=sys.stderr)
    return 1 if failed else 0


def confirm(regexes: list[str], matched: list[tuple[str, str]]) -> None:
    """List what the regexes matched and ask; CommandError unless the answer is y."""
    quoted = " ".join(repr(r) for r in regexes)
    print("%s %s regular expression%s (re.match against active task ids); %d task%s matched:" % (
        quoted, "is a" if len(regexes) == 1 else "are", "" if len(regexes) == 1 else "s",
        len(matched), "" if len(matched) == 1 else "s"))
    for root, task_id in matched:
        print("  %-20s (%s)" % (task_id, root))
    print("Kill %s [y/N]? " % ("it" if len(matched) == 1 else "all %d" % len(matched)), end="", flush=True)
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        print()
    if answer.strip().lower() not in ("y", "yes"):
        raise CommandError("not confirmed, nothing was killed (answer y, pass --yes, or give exact task ids)")


def kill_task(root: str, task_id: str, wait: float) -> str | None:
    """Stop one active task: through its live runner if it has one, else by taking over.

    Returns a note for the user when the runner had to be taken over from a live process.
    Aurora always took over at once: it SIGKILLed a live runner and killed the processes it could
    see, so finalizers never ran and descendants the runner had adopted could escape.
    """
    from thermos.core.helper import TaskRunnerHelper

    runner = live_runner(root, task_id)
    note = None
    if runner is not None:
        import psutil

        try:
            stopped = runner.status() == psutil.STATUS_STOPPED
        except psutil.Error:
            stopped = False
        if stopped:
            note = "its runner (pid %d) is stopped; took over from it" % runner.pid
        else:
            try:
                os.kill(runner.pid, signal.SIGUSR1)
            except OSError as err:
                if err.errno == errno.EPERM:
                    raise CommandError("not allowed to signal its runner (pid %d): run thermos kill as "
                                       "root or as the runner's user" % runner.pid) from None
                if err.errno != errno.ESRCH:
                    raise
            if wait_for_end(root, task_id, runner, wait):
                return None
            if _alive(runner):
                note = "its runner (pid %d) did not stop the task within %g s; took over from it" % (
                    runner.pid, wait)
    TaskRunnerHelper.kill(task_id, root, force=True)
    return note


def live_runner(root: str, task_id: str) -> psutil.Process | None:
    """The psutil.Process of the runner holding the task's checkpoint lock, verified; else None."""
    from thermos.common.ckpt import CheckpointDispatcher
    from thermos.gc.detect import locked_inodes, runner_verified

    checkpoint = TaskPath(root=root, task_id=task_id).getpath("runner_checkpoint")
    try:
        st = os.stat(checkpoint, follow_symlinks=False)
    except OSError:
        return None
    if (st.st_dev, st.st_ino) not in locked_inodes():
        return None
    state = CheckpointDispatcher.from_file(checkpoint)
    if state is None or not state.statuses or not runner_verified(state.statuses):
        return None
    import psutil

    try:
        return psutil.Process(state.statuses[-1].runner_pid)
    except psutil.Error:
        return None


def wait_for_end(root: str, task_id: str, runner: psutil.Process, timeout: float) -> bool:
    """Poll (bounded) until the task's record leaves tasks/active; False if the runner died first
    or the time ran out."""
    active = TaskPath(root=root, task_id=task_id, state="active").getpath("task_path")
    deadline = time.monotonic() + timeout
    while True:
        if not os.path.exists(active):
            return True
        if not _alive(runner):
            return not os.path.exists(active)
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)


def _alive(process: psutil.Process) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
