"""Where a task's files are, which of them may be deleted, and from which trusted directory.

A checkpoint root is either a fixed root (`/var/run/thermos`, `--root`) or the `checkpoints`
directory of a Mesos executor run (`<work_dir>/slaves/<sid>/frameworks/<fid>/executors/<eid>/
runs/<cid>/checkpoints`). The difference matters for safety:

* In a Mesos run the task's user can write the run directory, so the checkpoint, and the sandbox
  and log paths its header names, are untrusted: they may only name something inside that run
  directory. The agent's directories down to `runs/` are root's; the run directory and all below
  it are opened without following a symlink, and a path naming `latest` is never a run.
  The run may only be touched once the agent wrote `meta/.../runs/<cid>/executor.sentinel`.
* In a fixed root whose checkpoint directories only root (or we) can write, the header was written
  by the runner and its sandbox may be anywhere; it is still reached without following symlinks
  from `/`, the checkpoint root or a configured sandbox root. If others can write those
  directories the header is treated like a Mesos one: only paths inside the checkpoint root.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from thermos.gc.safe_delete import Anchors, UnsafePath, components, is_within, open_below, real_below

from thermos.common.constants import DEFAULT_SANDBOX_ROOT
from thermos.common.recordio import RecordIO, ThriftRecordReader
from thermos.gen.thermos.ttypes import RunnerCkpt, RunnerHeader

SENTINEL = "executor.sentinel"
_MESOS_TOKENS = ("slaves", "frameworks", "executors", "runs")


@dataclass(frozen=True)
class MesosRun:
    """One executor run: `<work_dir>/slaves/<sid>/frameworks/<fid>/executors/<eid>/runs/<cid>`."""

    work_dir: str
    relative: tuple[str, ...]  # the eight components below work_dir

    @functools.cached_property
    def path(self) -> str:
        return os.path.join(self.work_dir, *self.relative)

    @property
    def executor_id(self) -> str:
        return self.relative[5]

    @property
    def container_id(self) -> str:
        return self.relative[7]

    @property
    def sentinel(self) -> str:
        return os.path.join(self.work_dir, "meta", *self.relative, SENTINEL)

    def finished(self) -> bool:
        """Whether the agent recorded that this run's executor exited (`executor.sentinel`).

        The meta tree is the agent's (root's), never a task's, and the run's own ids never name
        `latest`: one `lstat` of the path is enough.
        """
        try:
            return stat.S_ISREG(os.stat(self.sentinel, follow_symlinks=False).st_mode)
        except OSError:
            return False


def mesos_run_of(path: str) -> MesosRun | None:
    """The Mesos run that a path (a run directory or anything inside it) belongs to (the agent's rule)."""
    try:
        parts = components(path)
    except UnsafePath:
        return None
    # The leftmost match: a tree shaped like a run *inside* a run's sandbox is the task's, not the agent's.
    for start in range(len(parts) - 7):
        window = parts[start:start + 8]
        if tuple(window[0::2]) == _MESOS_TOKENS and "latest" not in window[1::2]:
            return MesosRun(os.sep + os.path.join(*parts[:start]) if start else os.sep, tuple(window))
    return None


class _Descriptor:
    """An open directory, closed when the TaskFiles holding it goes away."""

    def __init__(self, path: str, fd: int, real: str) -> None:
        self.path, self.fd, self.real = path, fd, real

    def __del__(self) -> None:
        os.close(self.fd)


def _private(st: os.stat_result, euid: int) -> bool:
    return st.st_uid in (0, euid) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class TaskFiles:
    """The deletable files of one task, the trusted directories they are reached from, and its header."""

    def __init__(self, root: str, task_id: str, sandbox_roots: Sequence[str] = (DEFAULT_SANDBOX_ROOT,),
                 base: tuple[str, int, str] | None = None, mesos_run: MesosRun | None | bool = True) -> None:
        """`base`: the run directory (or root) already opened safely by the caller, as `(path, fd,
        real path)`; it is duplicated, so the caller keeps and closes its own descriptor.
        `mesos_run`: `mesos_run_of(root)` when the caller has it already."""
        if not task_id or "/" in task_id or task_id in (".", ".."):
            raise UnsafePath("invalid task id %r" % task_id)
        self.root = os.path.abspath(root)
        self.task_id = task_id
        self.mesos_run = mesos_run_of(self.root) if mesos_run is True else mesos_run or None
        self._sandbox_roots = tuple(sandbox_roots)
        self._header: RunnerHeader | None = None
        self._header_read = False
        self._trusted: bool | None = None
        self._base_fd: _Descriptor | None = None
        if base is not None:
            self._base_fd = _Descriptor(base[0], os.dup(base[1]), base[2])
        self._metadata_anchors: Anchors | None = None
        self._data_anchors: Anchors | None = None

    # ---- where things are ----------------------------------------------------------------

    def _base(self) -> tuple[str, int, str]:
        """The run directory (Mesos) or the checkpoint root, opened once: every walk starts there.

        The run directory is reached from the agent's work_dir without following a symlink, so
        a `latest` link or a link planted by the task never stands in for it.
        """
        if self._base_fd is None:
            if self.mesos_run is not None:
                # The agent's directories down to `runs/` are root's; the run directory is the
                # task user's, so it (and everything below it) is opened without following links.
                run = self.mesos_run
                runs_dir = os.path.join(run.work_dir, *run.relative[:-1])
                fd = open_below(runs_dir, run.relative[-1:], what="task %s" % self.task_id)
                self._base_fd = _Descriptor(run.path, fd, real_below(run.work_dir, run.relative))
            else:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
                self._base_fd = _Descriptor(self.root, os.open(self.root, flags), real_below(self.root, ()))
        return self._base_fd.path, self._base_fd.fd, self._base_fd.real

    @property
    def metadata_anchors(self) -> Anchors:
        """The checkpoint root (inside the run directory when it lies in a Mesos run)."""
        if self._metadata_anchors is None:
            self._metadata_anchors = Anchors([self._base()], scope=self.root)
        return self._metadata_anchors

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.root, "checkpoints", self.task_id)

    def task_json(self, state: str) -> str:
        return os.path.join(self.root, "tasks", state, self.task_id)

    def data_anchors(self) -> Anchors:
        """Where the header's sandbox and log directory may be, and whence they are reached."""
        if self._data_anchors is None:
            if self.mesos_run is not None:
                self._data_anchors = Anchors([self._base()], scope=self.mesos_run.path)
            elif self.header_trusted():
                self._data_anchors = Anchors(["/", self._base(), *self._sandbox_roots])
            else:
                self._data_anchors = Anchors([self._base()], scope=self.root)
        return self._data_anchors

    # ---- reading the header safely -------------------------------------------------------

    def _open_checkpoint_dir(self) -> int:
        return self.metadata_anchors.open_dir(self.checkpoint_dir, what="task %s" % self.task_id)

    def check_task_dir(self) -> None:
        """Raise UnsafePath if the checkpoint root or the task's checkpoint directory is a symlink."""
        try:
            os.close(self._open_checkpoint_dir())
        except FileNotFoundError:
            pass

    @property
    def header(self) -> RunnerHeader | None:
        if not self._header_read:
            self._header_read = True
            self._header, self._trusted = self._read_header()
        return self._header

    def header_trusted(self) -> bool:
        self.header  # noqa: B018 - reads the header and its trust together
        return bool(self._trusted)

    def _read_header(self, max_records: int = 16) -> tuple[RunnerHeader | None, bool]:
        try:
            dir_fd = self._open_checkpoint_dir()
        except (OSError, UnsafePath):
            return None, False
        try:
            fd = os.open("runner", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            os.close(dir_fd)
            return None, False
        try:
            euid = os.geteuid()
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None, False
            trusted = _private(st, euid) and _private(os.fstat(dir_fd), euid) and self._root_private(euid)
            with os.fdopen(os.dup(fd), "rb") as fp:
                reader = ThriftRecordReader(fp, RunnerCkpt)
                for _ in range(max_records):
                    record = reader.try_read()
                    if record is None:
                        break
                    if record.runner_header is not None:
                        return record.runner_header, trusted
        except (OSError, RecordIO.Error):
            pass
        finally:
            os.close(fd)
            os.close(dir_fd)
        return None, False

    def _root_private(self, euid: int) -> bool:
        try:
            paths = (self.root, os.path.join(self.root, "checkpoints"))
            return all(_private(os.stat(path), euid) for path in paths)
        except OSError:
            return False

    @property
    def sandbox(self) -> str | None:
        header = self.header
        return header.sandbox if header is not None and header.sandbox else None

    @property
    def log_dir(self) -> str | None:
        header = self.header
        return header.log_dir if header is not None and header.log_dir else None

    def log_dir_inside_sandbox(self) -> bool:
        sandbox, log_dir = self.sandbox, self.log_dir
        return bool(sandbox and log_dir and is_within(log_dir, sandbox, strict=True))
