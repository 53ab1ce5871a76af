"""Erasing a finished task: its sandbox data, its logs and its metadata, each only when safe.

What a task owns is Aurora's list (runner and coordinator checkpoints, the finished task JSON, the
process logs and the sandbox); how it is removed is `safe_delete` (from trusted directory
descriptors, never following a symlink). Before anything is removed the task must be
collectable: its checkpoint directory is a real directory (a symlinked task directory is
skipped, whole), it is not active, and in a Mesos run the agent has written `executor.sentinel`.
"""

from __future__ import annotations

import os

from thermos.gc.safe_delete import Anchors, Freed, UnsafePath, components
from thermos.gc.task_files import TaskFiles


class ActiveTask(Exception):
    """Raised instead of erasing anything of a task that is still active."""


class RunStillLive(UnsafePath):
    """The task's Mesos executor run has no `executor.sentinel` yet: the agent still runs it."""


def _lexists(anchors: Anchors, path: str) -> bool:
    try:
        fd = anchors.open_dir(os.path.dirname(path))
    except (OSError, UnsafePath):
        return False
    name = os.path.basename(path)
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _refuse_shallow(path: str, task_id: str) -> None:
    """Never remove `/x` or the home directory, whatever a checkpoint says (kept from the old collector)."""
    home = os.path.expanduser("~")
    if len(components(path)) < 2 or os.path.normpath(path) in (home, os.path.realpath(home)):
        raise UnsafePath("refusing to remove %s for task %s" % (path, task_id))


def check_collectable(files: TaskFiles) -> None:
    """Raise UnsafePath / ActiveTask / RunStillLive (one line each) unless the task may be erased."""
    files.check_task_dir()
    if _lexists(files.metadata_anchors, files.task_json("active")):
        raise ActiveTask("task %s in %s is still active; kill it first (thermos kill %s)" % (
            files.task_id, files.root, files.task_id))
    run = files.mesos_run
    if run is not None and not run.finished():
        raise RunStillLive("task %s: its Mesos executor run %s has no %s yet (the executor is still running)"
                           % (files.task_id, run.path, os.path.basename(run.sentinel)))


def erase_data(files: TaskFiles, checked: bool = False, with_logs: bool = False) -> Freed:
    """Remove the sandbox, except the log directory when it lives inside it (unless `with_logs`)."""
    if not checked:
        check_collectable(files)
    sandbox = files.sandbox
    if not sandbox:
        return Freed()
    _refuse_shallow(sandbox, files.task_id)
    keep = files.log_dir if files.log_dir_inside_sandbox() and not with_logs else None
    return files.data_anchors().remove(sandbox, keep=keep, allow_file=False)


def erase_logs(files: TaskFiles, checked: bool = False) -> Freed:
    """Remove the log directory, then the directories it leaves empty up to the sandbox."""
    if not checked:
        check_collectable(files)
    log_dir = files.log_dir
    if not log_dir:
        return Freed()
    _refuse_shallow(log_dir, files.task_id)
    anchors = files.data_anchors()
    freed = anchors.remove(log_dir, allow_file=False)
    sandbox = files.sandbox
    if freed.ok and sandbox and files.log_dir_inside_sandbox():
        _remove_empty_parents(anchors, log_dir, sandbox, freed)
    return freed


def erase_metadata(files: TaskFiles, checked: bool = False) -> Freed:
    """Remove the finished task JSON and the task's checkpoint directory (runner and coordinators)."""
    if not checked:
        check_collectable(files)
    files.header  # noqa: B018 - remember where the logs and data are before the checkpoint goes
    anchors = files.metadata_anchors
    freed = anchors.remove(files.task_json("finished"), unlink_symlink=True)
    freed.add(anchors.remove(files.checkpoint_dir, allow_file=False))
    return freed


def erase_task(files: TaskFiles, data: bool = True, logs: bool = True, metadata: bool = True) -> Freed:
    check_collectable(files)
    freed = Freed()
    if data:  # with the logs too, the sandbox goes in one walk
        freed.add(erase_data(files, checked=True, with_logs=logs))
    if logs:
        freed.add(erase_logs(files, checked=True))
    if metadata:
        freed.add(erase_metadata(files, checked=True))
    return freed


def _remove_empty_parents(anchors: Anchors, path: str, stop: str, freed: Freed) -> None:
    """rmdir the directories from dirname(path) up to and including `stop` while they are empty."""
    parts = list(components(path)[:-1])
    stop_depth = len(components(stop))
    while len(parts) >= stop_depth:
        directory = os.sep + os.path.join(*parts)
        try:
            _, rel = anchors.locate(directory)
            if not rel:
                return
            fd = anchors.open_dir(os.path.dirname(directory))
        except (OSError, UnsafePath):
            return
        try:
            os.rmdir(rel[-1], dir_fd=fd)  # only ever an empty directory, never through a symlink
            freed.dirs += 1
        except OSError:
            return
        finally:
            os.close(fd)
        parts.pop()
