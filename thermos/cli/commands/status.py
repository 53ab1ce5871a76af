"""Get the status of task(s).

Usage: thermos status [options] [task_name(s) or task_regexp(s)]

Lists the active and finished tasks of every checkpoint root whose id matches (re.match) any of
the regexes (default: all). -v adds state and start time, -vv user, ports and sandbox, -vvv the
process table. --json prints everything for scripts. Exits 1 if no task matched or a listed
task's checkpoint could not be read.
"""

from __future__ import annotations

import argparse
import functools
import os
import pwd
import sys
from dataclasses import dataclass

from thermos.cli.common import (
    CommandError,
    add_command_parser,
    asctime,
    compile_patterns,
    get_path_detector,
    print_json,
    thrift_to_json,
)
from thermos.common.ckpt import CheckpointDispatcher
from thermos.gen.thermos.ttypes import ProcessState, RunnerState, TaskState
from thermos.monitoring.detector import TaskDetector
from thermos.monitoring.monitor import read_summary

NAME = "status"
CORRUPT = " - checkpoint stream CORRUPT or outdated format"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, NAME, __doc__)
    parser.add_argument("-v", action="count", dest="verbose", default=0,
                        help="More detail; repeat up to three times.")
    parser.add_argument("--verbosity", type=int, dest="verbose", metavar="N", help="Detail level 0-3.")
    parser.add_argument("--only", choices=("active", "finished"), help="Display only tasks of this type.")
    parser.add_argument("--json", action="store_true", help="Print JSON (always full detail).")
    parser.add_argument("regexes", nargs="*", metavar="task_regex")
    return parser


@dataclass
class Listed:
    root: str
    task_id: str
    where: str
    checkpoint: str
    state: RunnerState | None = None
    error: str | None = None

    def load(self, processes: bool) -> None:
        """Read the checkpoint: fully replayed if `processes` are shown, else just its summary."""
        if not os.path.exists(self.checkpoint):
            self.error = "checkpoint %s is missing" % self.checkpoint
            return
        if processes:
            self.state = CheckpointDispatcher.from_file(self.checkpoint)
        else:
            summary = read_summary(self.checkpoint)
            self.error = summary.error
            self.state = RunnerState(header=summary.header, statuses=summary.statuses, processes={})
        if self.error is None and (self.state is None or self.state.header is None):
            self.error = "checkpoint %s is corrupt or in an outdated format" % self.checkpoint
        if self.error is not None:
            self.state = None

    @property
    def owner(self) -> str:
        """Owner of the runner checkpoint (else of the task record), as Aurora showed it."""
        for path in (self.checkpoint, os.path.join(self.root, "tasks", self.where, self.task_id)):
            try:
                return _user_name(os.stat(path).st_uid)
            except OSError:
                continue
        return "unknown"


@functools.lru_cache(maxsize=256)
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "uid:%s" % uid


def _format(task: Listed, verbose: int) -> None:
    """Aurora's status lines for one task."""
    print("  %-20s [owner: %8s]" % (task.task_id, task.owner), end="")
    if verbose == 0:
        print()
        return
    state = task.state
    if state is None:
        print(CORRUPT)
        return
    header = state.header
    last = state.statuses[-1].state if state.statuses else None
    print("  state: %8s" % TaskState._VALUES_TO_NAMES.get(last, "Unknown"), end="")
    print(" start: %25s" % asctime(header.launch_time_ms / 1000.0))
    if verbose > 1:
        print("    user: %s" % header.user, end="")
        if header.ports:
            print(" ports: %s" % " ".join("%s -> %s" % (key, val) for key, val in header.ports.items()))
        else:
            print(" ports: None")
        print("    sandbox: %s" % header.sandbox)
    if verbose > 2:
        print("    process table:")
        for process, history in (state.processes or {}).items():
            print("      - %s runs: %s" % (process, len(history)), end="")
            last_run = history[-1]
            print(" last: pid=%s, rc=%s, finish:%s, state:%s" % (
                last_run.pid or "None",
                last_run.return_code if last_run.return_code is not None else "",
                asctime(last_run.stop_time) if last_run.stop_time else "None",
                ProcessState._VALUES_TO_NAMES.get(last_run.state, "Unknown")))
        print()


def _json(task: Listed) -> dict[str, object]:
    data: dict[str, object] = {"root": task.root, "task_id": task.task_id, "where": task.where,
                               "owner": task.owner, "checkpoint": task.checkpoint, "error": task.error}
    state = task.state
    if state is None:
        return data
    header = state.header
    data.update(
        state=TaskState._VALUES_TO_NAMES.get(state.statuses[-1].state) if state.statuses else None,
        header=thrift_to_json(header),
        start_time=header.launch_time_ms / 1000.0 if header.launch_time_ms is not None else None,
        processes={name: {"runs": len(runs), "last": thrift_to_json(runs[-1], {"state": ProcessState})}
                   for name, runs in (state.processes or {}).items()})
    return data


def _missing_roots(args: argparse.Namespace) -> list[str]:
    return [root for root in args.roots if not os.path.isdir(root)]


def run(args: argparse.Namespace) -> int:
    patterns = compile_patterns(args.regexes or [".*"])
    verbose = args.verbose or 0
    detector = get_path_detector(args)
    found: dict[str, list[Listed]] = {"active": [], "finished": []}
    for root in detector.get_paths():
        tasks = TaskDetector(root)
        for where in found:
            if args.only not in (None, where):
                continue
            for _, task_id in tasks.get_task_ids(state=where):
                if any(pattern.match(task_id) for pattern in patterns):
                    found[where].append(Listed(root, task_id, where, tasks.get_checkpoint(task_id)))

    listed = found["active"] + found["finished"]
    if verbose > 0 or args.json:
        for task in listed:
            task.load(processes=verbose > 2 or args.json)
    if args.json:
        print_json({"tasks": [_json(task) for task in listed]})
    else:
        for where, title in (("active", "Active tasks:"), ("finished", "Finished tasks:")):
            if found[where]:
                print(title)
                for task in found[where]:
                    _format(task, verbose)
                print()
        if not listed and not _missing_roots(args):
            print("No tasks found.")
    if not listed:
        missing = _missing_roots(args)
        if missing:
            raise CommandError("No tasks found: checkpoint root %s does not exist (give --root the "
                               "--checkpoint_root the tasks ran under)" % ", ".join(missing))
        return 1
    errors = [task.error for task in listed if task.error]
    if errors:
        sys.stdout.flush()
        for error in errors[:-1]:
            print("thermos status: error: %s (inspect it with 'thermos read --simple')" % error,
                  file=sys.stderr)
        raise CommandError("%s (inspect it with 'thermos read --simple')" % errors[-1])
    return 0
