"""Carrying out a plan's verbs on one task: collect (erase everything), kill, mark LOST.

Each returns one line for the log: what was done and the bytes freed, or why it was skipped.
Nothing raises for bad input on disk: a symlinked task directory, an active task, a Mesos run the
agent still runs, a permission error are each one line, and the task is left as it was.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from thermos.gc import collect
from thermos.gc.decide import LocalTask
from thermos.gc.safe_delete import Freed, UnsafePath, format_bytes
from thermos.gc.task_files import TaskFiles

from thermos.gen.thermos.ttypes import TaskState

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    task: LocalTask
    done: bool
    line: str
    freed: Freed | None = None


def _files(task: LocalTask, sandbox_roots: Sequence[str] | None) -> TaskFiles:
    if sandbox_roots is None:
        return TaskFiles(task.root, task.task_id)
    return TaskFiles(task.root, task.task_id, sandbox_roots)


def collect_task(task: LocalTask, sandbox_roots: Sequence[str] | None = None, why: str = "") -> Outcome:
    """Erase the task's sandbox, logs and metadata (runner and coordinator checkpoints, task JSON)."""
    suffix = " (%s)" % why if why else ""
    try:
        freed = collect.erase_task(_files(task, sandbox_roots))
    except (UnsafePath, collect.ActiveTask, OSError) as err:
        return Outcome(task, False, "skipped %s in %s: %s" % (task.task_id, task.root, err))
    if not freed.ok:
        more = " (+%d more)" % freed.more_errors if freed.more_errors else ""
        return Outcome(task, False, "collected %s in %s partly: freed %s; %s%s" % (
            task.task_id, task.root, format_bytes(freed.bytes), "; ".join(freed.errors), more), freed)
    return Outcome(task, True, "collected %s in %s: freed %s%s" % (
        task.task_id, task.root, format_bytes(freed.bytes), suffix), freed)


def kill_task(task: LocalTask, terminal_status: int = TaskState.KILLED) -> Outcome:
    """Kill the task through the core's kill path (runner first, then every process), recording it.

    The task directory and runner checkpoint must be real (not symlinks): the kill path takes the
    checkpoint's lock and signals the pids it names, so a planted link must never point it at
    another task.
    """
    from thermos.core.helper import TaskRunnerHelper  # the kill path is rare: import it then (~5 MB)

    verb = "killed" if terminal_status == TaskState.KILLED else "marked LOST"
    try:
        files = _files(task, None)
        files.check_task_dir()
        runner = os.path.join(files.checkpoint_dir, "runner")
        if os.path.islink(runner):
            raise UnsafePath("%s is a symlink: not followed" % runner)
        TaskRunnerHelper.kill(task.task_id, task.root, force=True, terminal_status=terminal_status)
    except (UnsafePath, TaskRunnerHelper.Error, OSError) as err:
        return Outcome(task, False, "could not %s %s in %s: %s" % (
            "kill" if terminal_status == TaskState.KILLED else "mark LOST", task.task_id, task.root, err))
    return Outcome(task, True, "%s %s in %s" % (verb, task.task_id, task.root))
