"""Garbage collect task(s) and task metadata.

Usage: thermos gc [options] [task_id1 task_id2 ...]

If tasks are specified (regexes, matched against finished tasks), restrict garbage collection to
only those tasks; otherwise every finished task is considered and the --max_* policies choose.
By default a task's sandbox data is deleted and its logs and metadata (task record and
checkpoints) are kept. Active tasks are never collected. --dryrun shows what would be deleted.

With --watch (or --once for a single pass) it is an agent-local daemon: every --interval it
collects whole finished tasks, oldest first, that the --max_* policy selects, beyond
--max-terminal-tasks, or while a sandbox filesystem is above --disk-high / --inode-high percent
(until it is back under --disk-low / --inode-low), logging one line per task with the bytes freed.

Deletion never follows a symlink: a task directory or sandbox that is a symlink is skipped with
one line, and a symlink inside a sandbox is unlinked, never traversed.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time

from thermos.cli.common import CommandError, add_command_parser, get_path_detector, roots_text, tasks_from_re
from thermos.common.constants import DEFAULT_SANDBOX_ROOT
from thermos.gc.safe_delete import format_bytes
from thermos.monitoring.garbage import GarbageCollectionPolicy, TaskGarbageCollector

NAME = "gc"

_TIME_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DATA_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_time(text: str) -> float:
    """'2d5h', '90m', '7200s' or a plain number of seconds -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([wdhms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError("bad --max_age %r: expected a duration like 2d5h, 90m or 7200s" % text)
    return sum(float(number) * _TIME_UNITS[unit] for number, unit in parts)


def parse_data(text: str) -> int:
    """'20G', '512M', '1.5T', '100KB' or a plain number of bytes -> bytes (binary units)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?", text.strip().lower())
    if not match:
        raise ValueError("bad --max_space %r: expected a size like 20G, 512M or 100KB" % text)
    return int(float(match.group(1)) * _DATA_UNITS[match.group(2).upper()])


class _SetKeep(argparse.Action):
    """--keep-X sets keep_X True, --delete-X sets it False (Aurora's paired flags)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, bool(option_string and option_string.startswith("--keep")))


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, NAME, __doc__)
    parser.add_argument("--max_age", metavar="AGE", help="Max age in human readable form, e.g. 2d5h or 7200s")
    parser.add_argument("--max_tasks", metavar="NUM", help="Max number of tasks to keep.")
    parser.add_argument("--max_space", metavar="SPACE", help="Max space to allow for tasks, e.g. 20G.")
    parser.add_argument("--keep-data", "--delete-data", dest="keep_data", nargs=0, action=_SetKeep,
                        default=False, help="Keep (default: delete) the sandbox data.")
    parser.add_argument("--keep-logs", "--delete-logs", dest="keep_logs", nargs=0, action=_SetKeep,
                        default=True, help="Keep (default) or delete the logs.")
    parser.add_argument("--keep-metadata", "--delete-metadata", dest="keep_metadata", nargs=0,
                        action=_SetKeep, default=True,
                        help="Keep (default) or delete the task record and checkpoints.")
    parser.add_argument("--force", action="store_true",
                        help="Perform garbage collection without confirmation")
    parser.add_argument("--dryrun", action="store_true", help="Don't actually run garbage collection.")
    parser.add_argument("--sandbox-root", dest="sandbox_roots", metavar="PATH", action="append",
                        help="a directory holding sandboxes, reached through symlinks in its own path "
                             "(repeatable; %s always is)" % DEFAULT_SANDBOX_ROOT)
    watch = parser.add_argument_group(
        "watch mode", "collect whole finished tasks (data, logs and metadata) by policy and disk pressure")
    watch.add_argument("--watch", action="store_true",
                       help="run as a daemon: a pass every --interval, no prompt")
    watch.add_argument("--once", action="store_true", help="one --watch pass, then exit")
    watch.add_argument("--interval", metavar="AGE", default="60s", help="time between passes (default 60s)")
    for name, what in (("disk", "blocks"), ("inode", "inodes")):
        watch.add_argument("--%s-high" % name, metavar="PCT", type=_percent,
                           help="collect when a sandbox filesystem has over PCT percent of its %s in use" % (
                               what))
        watch.add_argument("--%s-low" % name, metavar="PCT", type=_percent,
                           help="... until it is back under PCT percent (default: the high mark)")
    watch.add_argument("--max-terminal-tasks", metavar="NUM", type=_count,
                       help="collect the oldest finished tasks beyond NUM")
    parser.add_argument("regexes", nargs="*", metavar="task_regex")
    return parser


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("expected a percentage between 0 and 100, got %r" % text)
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError("expected a number of tasks, got %r" % text)
    return int(text)


def _policy_options(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {}
    try:
        if args.max_age is not None:
            options["max_age"] = parse_time(args.max_age)
        if args.max_space is not None:
            options["max_space"] = parse_data(args.max_space)
    except ValueError as err:
        raise CommandError(str(err)) from None
    if args.max_tasks is not None:
        try:
            options["max_tasks"] = int(args.max_tasks)
            if options["max_tasks"] < 0:  # type: ignore[operator]
                raise ValueError
        except ValueError:
            raise CommandError("bad --max_tasks %r: expected a number of tasks to keep, e.g. 100" % (
                args.max_tasks)) from None
    return options


def _select(args: argparse.Namespace) -> list[tuple[str, str]]:
    detector = get_path_detector(args)
    options = _policy_options(args)
    for root in detector.get_paths():
        print("Analyzing root at %s" % root)
    if args.regexes:
        active = set(tasks_from_re(args.regexes, detector, state="active"))
        finished = tasks_from_re(args.regexes, detector, state="finished")
        return [task for task in finished if task not in active]
    print("No task ids specified, using default collector.")
    policy = GarbageCollectionPolicy(detector, include_metadata=not args.keep_metadata,
                                     include_logs=not args.keep_logs, verbose=True, logger=print,
                                     **options)  # type: ignore[arg-type]
    return [(task.checkpoint_root, task.task_id) for task in policy.run()]


def run(args: argparse.Namespace) -> int:
    if args.watch or args.once:
        return _watch(args)
    gc_tasks = _select(args)
    if not gc_tasks and args.regexes:
        raise CommandError("No finished tasks matched %s in %s (gc never collects active tasks; "
                           "'thermos status --only finished' lists the others)" % (
                               " ".join(repr(r) for r in args.regexes), roots_text(get_path_detector(args))))
    if not gc_tasks:
        print("No tasks to garbage collect.  Exiting")
        return 0

    if not args.force and not args.dryrun:
        print("Would garbage collect %d task%s:" % (len(gc_tasks), "" if len(gc_tasks) == 1 else "s"))
        for root, task_id in gc_tasks:
            print("  %s  (%s)" % (task_id, root))
        print("Continue [y/N]? ", end="", flush=True)
        answer = sys.stdin.readline().strip() or "N"
        if answer.lower() != "y":
            print("Cancelling gc.")
            return 1
    print("Running gc...")
    failed = 0
    for root, task_id in gc_tasks:
        collector = TaskGarbageCollector(root, task_id, sandbox_roots=sandbox_roots(args))
        print("  Task %s " % task_id, end="")
        print("data (%s) " % ("keeping" if args.keep_data else "deleting"), end="")
        print("logs (%s) " % ("keeping" if args.keep_logs else "deleting"), end="")
        print("metadata (%s) " % ("keeping" if args.keep_metadata else "deleting"))
        steps = [(keep, erase) for keep, erase in (
            (args.keep_data, collector.erase_data), (args.keep_logs, collector.erase_logs),
            (args.keep_metadata, collector.erase_metadata)) if not keep]
        freed = 0
        for _, erase in steps:
            if args.dryrun:
                print("    would run %s()" % erase.__name__)
                continue
            try:
                result = erase()
            except (OSError, TaskGarbageCollector.ActiveTask, TaskGarbageCollector.UnsafePath) as err:
                print("thermos gc: error: skipping the rest of task %s: %s" % (task_id, err), file=sys.stderr)
                failed += 1
                break
            freed += result.bytes
            for line in result.errors:
                print("thermos gc: error: %s" % line, file=sys.stderr)
            if result.more_errors:
                print("thermos gc: error: ... and %d more errors under task %s" % (
                    result.more_errors, task_id), file=sys.stderr)
            if not result.ok:
                failed += 1
        if not args.dryrun:
            print("    freed %s" % format_bytes(freed))
        print("done.")
    return 1 if failed else 0


def _watch(args: argparse.Namespace) -> int:
    """`--watch` / `--once`: see thermos.gc.watch."""
    from thermos.gc.decide import GcPolicy
    from thermos.gc.detect import HostScanner
    from thermos.gc.watch import Watcher

    if args.regexes:
        raise CommandError("--watch collects by policy and takes no task regexes (got %s); run "
                           "'thermos gc REGEX' for named tasks" % " ".join(args.regexes))
    options = _policy_options(args)
    try:
        interval = parse_time(args.interval)
    except ValueError:
        raise CommandError("bad --interval %r: expected a duration like 60s or 5m" % args.interval) from None
    for name in ("disk", "inode"):
        high, low = getattr(args, name + "_high"), getattr(args, name + "_low")
        if low is not None and (high is None or low > high):
            raise CommandError("--%s-low %g needs a --%s-high at or above it" % (name, low, name))
    policy = GcPolicy(max_age=options.get("max_age"), max_space=options.get("max_space"),  # type: ignore
                      max_tasks=options.get("max_tasks"), max_terminal_tasks=args.max_terminal_tasks,  # type: ignore
                      disk_high=args.disk_high, disk_low=args.disk_low, inode_high=args.inode_high,
                      inode_low=args.inode_low)
    detector = get_path_detector(args)
    roots = sandbox_roots(args)
    watcher = Watcher(HostScanner(detector, roots), policy, dry_run=args.dryrun, logger=_stamped,
                      sandbox_roots=roots)
    where = list(args.roots) + (["Mesos work_dir %s" % args.mesos_root] if args.mesos_root else [])
    _stamped("watching %s every %s%s" % (", ".join(where), args.interval,
                                         " (dry run)" if args.dryrun else ""))
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        failed = watcher.run(interval, stop, passes=1 if args.once else None)
    except KeyboardInterrupt:
        failed = 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 1 if failed else 0


def _stamped(line: str) -> None:
    print("%s %s" % (time.strftime("%Y-%m-%d %H:%M:%S"), line), flush=True)


def sandbox_roots(args: argparse.Namespace) -> tuple[str, ...]:
    return (DEFAULT_SANDBOX_ROOT, *(getattr(args, "sandbox_roots", None) or ()))
