"""Tail the logs of a task process.

Usage: thermos tail [--stderr] task_id [process_name]

Shows the last lines of the newest run's stdout (or stderr). If that run is still RUNNING, keeps
following the log until the run ends (or its process is gone), then exits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import IO

import psutil

from thermos.cli.common import CommandError, add_command_parser, get_path_detector
from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.path import TaskPath
from thermos.gen.thermos.ttypes import RunnerState
from thermos.monitoring.detector import TaskDetector
from thermos.monitoring.monitor import TaskMonitor

NAME = "tail"
LAST_LINES = 10
POLL_INTERVAL = 0.25  # how often a followed log is read and its run re-checked, seconds


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, NAME, __doc__)
    parser.add_argument("--stderr", action="store_true", dest="use_stderr",
                        help="Tail stderr instead of stdout.")
    parser.add_argument("--poll-interval", type=float, default=POLL_INTERVAL, help=argparse.SUPPRESS)
    parser.add_argument("words", nargs="*", metavar="task_id [process]")
    return parser


def _find(task_id: str, args: argparse.Namespace) -> tuple[str, TaskDetector, RunnerState]:
    """The first root whose checkpoint of `task_id` replays."""
    detector = get_path_detector(args)
    unreadable = None
    for root in detector.get_paths():
        tasks = TaskDetector(root)
        checkpoint = tasks.get_checkpoint(task_id)
        if not os.path.exists(checkpoint):
            continue
        state = CheckpointDispatcher.from_file(checkpoint)
        if state is not None and state.header is not None:
            return root, tasks, state
        unreadable = checkpoint
    if unreadable:
        raise CommandError("Could not read the checkpoint %s (see 'thermos read --simple %s')" % (
            unreadable, unreadable))
    raise CommandError("Could not find task: no checkpoint of %r in %s ('thermos status' lists "
                       "the tasks)" % (task_id, ", ".join(detector.get_paths()) or "any root"))


def last_lines(fp: IO[bytes], count: int = LAST_LINES) -> list[bytes]:
    """The last `count` lines of a file, reading only its end."""
    fp.seek(0, os.SEEK_END)
    end = fp.tell()
    block, data = 8192, b""
    while end > 0 and data.count(b"\n") <= count:
        start = max(0, end - block)
        fp.seek(start)
        data = fp.read(end - start) + data
        end = start
        block *= 2
    lines = deque(data.splitlines(keepends=True), maxlen=count)
    return list(lines)


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _follow(logfile: str, is_active: Callable[[], bool], poll: float) -> None:
    """Print the log's last lines, then everything appended until `is_active()` turns False."""
    fp: IO[bytes] | None = None
    inode = None
    try:
        while True:
            if fp is None and os.path.exists(logfile):
                fp = open(logfile, "rb")
                inode = os.fstat(fp.fileno()).st_ino
                _write(b"".join(last_lines(fp)))
            active = is_active()  # checked before the read, so nothing written before the end is lost
            if fp is not None:
                chunk = fp.read()
                if chunk:
                    _write(chunk)
                try:
                    st = os.stat(logfile)
                    if st.st_ino != inode or st.st_size < fp.tell():  # rotated or truncated
                        fp.close()
                        fp = open(logfile, "rb")
                        inode = os.fstat(fp.fileno()).st_ino
                except FileNotFoundError:
                    pass
            if not active:
                return
            time.sleep(poll)  # pacing the follow loop, not synchronisation
    finally:
        if fp is not None:
            fp.close()


def run(args: argparse.Namespace) -> int:
    if not args.words:
        raise CommandError("Expected a task to tail, got nothing! (usage: thermos tail task_id [process])")
    if len(args.words) > 2:
        raise CommandError("Expected at most two arguments (task and optional process), got %d" % (
            len(args.words)))
    task_id = args.words[0]
    root, tasks, state = _find(task_id, args)
    log_dir = state.header.log_dir
    process_runs = list(tasks.get_process_runs(task_id, log_dir)) if log_dir else []
    if len(args.words) == 2:
        process_runs = [(process, run) for process, run in process_runs if process == args.words[1]]
    if not process_runs:
        if len(args.words) == 2:
            hint = "process %r has no logs; the task's processes are: %s" % (
                args.words[1], ", ".join(sorted(state.processes or {})) or "none yet")
        else:
            hint = "task %s has no process logs yet" % task_id
        raise CommandError("No processes found (%s)" % hint)
    processes = {process for process, _ in process_runs}
    if len(processes) != 1:
        raise CommandError("More than one process matches query; name one of: %s" % (
            ", ".join(sorted(processes))))
    process = processes.pop()
    run_index = max(run for _, run in process_runs)
    logdir = TaskPath(root=root, task_id=task_id, process=process, run=run_index,
                      log_dir=log_dir).getpath("process_logdir")
    logfile = os.path.join(logdir, "stderr" if args.use_stderr else "stdout")
    monitor = TaskMonitor(root, task_id)

    def is_active() -> bool:
        for status, active_run in monitor.get_active_processes():
            if status.process == process and active_run == run_index:
                return status.pid is None or psutil.pid_exists(status.pid)
        return False

    if not is_active():
        if not os.path.exists(logfile):
            raise CommandError("log %s does not exist (the run never wrote it, or it was garbage "
                               "collected)" % logfile)
        print("Tail of terminal log %s" % logfile, flush=True)
        with open(logfile, "rb") as fp:
            _write(b"".join(last_lines(fp)))
        return 0
    print("Tail of active log %s" % logfile, flush=True)
    _follow(logfile, is_active, args.poll_interval)
    return 0
