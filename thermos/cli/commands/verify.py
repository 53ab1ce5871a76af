"""Check that task checkpoints are consistent.

Usage: thermos verify [--json] TASK_ID|PATH [...]

Each argument is a task id, looked up in every checkpoint root (--root, --mesos-root), or a path:
a task's checkpoint directory (ROOT/checkpoints/TASK_ID) or its runner checkpoint file.

Checks the framing of every checkpoint file, one runner header, task states and timestamps, per
process sequence numbers (+1 each), legal state transitions and times, that every coordinator
checkpoint agrees with the runner checkpoint, and that the task JSON is in tasks/active or
tasks/finished as the task's state says. Prints one line per problem (file, record index from 0
and byte offset, what is wrong) and one summary line per task.

Exit status: 0 when every task is consistent, 1 when a problem was found, 2 when an argument
names no task or checkpoint. Notes (a torn last record, which readers ignore; coordinator records
a live runner has not read yet) are printed but do not change the exit status.
"""

from __future__ import annotations

import argparse
import os

from thermos.cli.common import CommandError, add_command_parser, get_path_detector, print_json, roots_text
from thermos.common.verify import Report, locate, verify_task

NAME = "verify"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, NAME, __doc__)
    parser.add_argument("--json", action="store_true", help="Print one JSON document instead of text.")
    parser.add_argument("targets", nargs="*", metavar="TASK_ID|PATH")
    return parser


def _task_dirs(task_id: str, args: argparse.Namespace) -> list[tuple[str, str]]:
    """(root, checkpoint dir) of `task_id` in every root that has its checkpoints or task JSON."""
    found = []
    for root in get_path_detector(args).get_paths():
        places = [os.path.join(root, "checkpoints", task_id)]
        places += [os.path.join(root, "tasks", state, task_id) for state in ("active", "finished")]
        if any(os.path.lexists(place) for place in places):
            found.append((root, places[0]))
    return found


def _resolve(target: str, args: argparse.Namespace) -> list[tuple[str, str, str | None, str]]:
    """(checkpoint dir, runner file name, root, task id) for each task `target` names."""
    if os.sep not in target and target not in (".", ".."):
        found = _task_dirs(target, args)
        if found:
            return [(ckpt_dir, "runner", root, target) for root, ckpt_dir in found]
    if os.path.isdir(target):
        root, task_id = locate(target)
        return [(target, "runner", root, task_id)]
    if os.path.isfile(target):
        ckpt_dir = os.path.dirname(os.path.abspath(target))
        root, task_id = locate(ckpt_dir)
        return [(ckpt_dir, os.path.basename(target), root, task_id)]
    raise CommandError("%s is neither a task in %s nor a checkpoint directory or file (give a task id, "
                       "ROOT/checkpoints/TASK_ID or its runner file; 'thermos status' lists the tasks)" % (
                           target, roots_text(get_path_detector(args))), code=2)


def _summary(report: Report) -> str:
    state = "no task state" if report.task_state is None else "state %s" % report.to_json()["state"]
    if report.partial:
        state += " before the damage"
    counts = "%d runner record%s, %d coordinator checkpoint%s, %s" % (
        report.records, "" if report.records == 1 else "s", len(report.coordinators),
        "" if len(report.coordinators) == 1 else "s", state)
    if report.consistent:
        return "%s: consistent (%s)" % (report.task_id, counts)
    problems = len(report.problems)
    return "%s: %d problem%s (%s)" % (report.task_id, problems, "" if problems == 1 else "s", counts)


def run(args: argparse.Namespace) -> int:
    if not args.targets:
        raise CommandError("Must specify tasks or checkpoints! (e.g. thermos verify hello_world or "
                           "thermos verify /var/run/thermos/checkpoints/hello_world)", code=2)
    targets = [place for target in args.targets for place in _resolve(target, args)]
    reports = [verify_task(ckpt_dir, runner_file, root=root, task_id=task_id)
               for ckpt_dir, runner_file, root, task_id in targets]
    consistent = all(report.consistent for report in reports)
    if args.json:
        print_json({"consistent": consistent, "tasks": [report.to_json() for report in reports]})
    else:
        for report in reports:
            for finding in report.findings:
                print(finding.line())
            print(_summary(report))
    return 0 if consistent else 1
