"""Kill task(s).

Usage: thermos kill task_id1 [task_id2 ...]

Regular expressions may be used to match multiple tasks (re.match against the active tasks of
every checkpoint root). Each matching task's processes are killed, the task is recorded KILLED
and moved to the finished tasks, even if its runner is gone.
"""

from __future__ import annotations

import argparse
import os
import sys

from thermos.cli.common import CommandError, add_command_parser, get_path_detector, roots_text, tasks_from_re
from thermos.common.path import TaskPath

NAME = "kill"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, NAME, __doc__)
    parser.add_argument("regexes", nargs="*", metavar="task_regex")
    return parser


def run(args: argparse.Namespace) -> int:
    if not args.regexes:
        raise CommandError("Must specify tasks! (e.g. thermos kill 'hello_world.*'; "
                           "'thermos status --only active' lists them)")
    detector = get_path_detector(args)
    matched = tasks_from_re(args.regexes, detector, state="active")
    if not matched:
        raise CommandError("No active tasks matched %s in %s ('thermos status --only active' lists them)" % (
            " ".join(repr(r) for r in args.regexes), roots_text(detector)))
    from thermos.core.helper import TaskRunnerHelper

    failed = 0
    for root, task_id in matched:
        print("Killing %s..." % task_id, end="", flush=True)
        try:
            TaskRunnerHelper.kill(task_id, root, force=True)
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
    return 1 if failed else 0
