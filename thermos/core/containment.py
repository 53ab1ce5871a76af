"""Finding every process of a task, whoever kills it: a per-task cgroup, else an inherited marker.

A double-forked `setsid()` daemon leaves its task's process tree and, once its runner is dead, is
a child of pid 1: no tree walk finds it. So each coordinator puts itself into the task's cgroup
before it starts anything, and every process it starts inherits the membership. The cgroup's path
is recorded in the runner checkpoint's header, so a later runner, `thermos kill` or the executor
finds it and kills it as a whole.

The task's cgroup is a child of the runner's own cgroup in that hierarchy (`thermos.<task>.<hash>`
beside the runner). Under a Mesos agent that is inside the container's cgroup, so the task stays
under the container's limits and the agent's own freezer still reaches it.

* cgroup v2 (the `unified` mount on hybrid hosts, or /sys/fs/cgroup itself): `cgroup.kill` kills
  every member atomically, even one forking at that moment.
* cgroup v1 `freezer` (what Mesos uses): freeze, list, SIGKILL, thaw; nothing can fork meanwhile.
* neither (not root, or no writable hierarchy): every task process gets THERMOS_TASK_MARKER in its
  environment, and a /proc scan of the task user's processes finds what still carries it.

`THERMOS_CGROUP=off` in the environment turns cgroups off (tests of the marker path).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
import zlib

from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.path import TaskPath
from thermos.common.recordio import RecordIO
from thermos.gen.thermos.ttypes import RunnerState

log = logging.getLogger(__name__)

MARKER_ENV = "THERMOS_TASK_MARKER"
_V2_MOUNTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
_V1_FREEZER = "/sys/fs/cgroup/freezer"


def task_marker(checkpoint_root: str, task_id: str) -> str:
    """One name per (checkpoint root, task id): the cgroup's name and the environment marker."""
    # zlib, not hashlib: hashlib maps OpenSSL's libcrypto (3.4 MB) into every runner.
    data = ("%s\0%s" % (os.path.abspath(checkpoint_root), task_id)).encode("utf-8", "surrogateescape")
    return "%s.%08x%04x" % (task_id[:200], zlib.crc32(data), zlib.crc32(data, 0x5bd1e995) & 0xFFFF)


def _is_cgroup2(path: str) -> bool:
    return os.path.exists(os.path.join(path, "cgroup.procs")) and os.path.exists(
        os.path.join(path, "cgroup.controllers"))


PREFIX = "thermos."


def _own_cgroup(v1_controller: str | None) -> str | None:
    """This process's cgroup path: in the v2 hierarchy (None) or the v1 one of a controller."""
    try:
        with open("/proc/self/cgroup") as fp:
            lines = fp.read().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if v1_controller is None and hierarchy == "0" and controllers == "":
            return path
        if v1_controller is not None and v1_controller in controllers.split(","):
            return path
    return None


class TaskCgroup:
    """The cgroup holding a task's coordinators and everything they start."""

    def __init__(self, path: str, version: int) -> None:
        self.path = path
        self.version = version

    @classmethod
    def for_task(cls, checkpoint_root: str, task_id: str) -> TaskCgroup | None:
        """Where a new task's cgroup goes on this host (beside the runner's own cgroup); None
        without a usable hierarchy."""
        if os.environ.get("THERMOS_CGROUP") == "off":
            return None
        name = PREFIX + task_marker(checkpoint_root, task_id)
        for mount in _V2_MOUNTS:
            own = _own_cgroup(None)
            if own is not None and _is_cgroup2(mount) and os.access(mount, os.W_OK):
                return cls(os.path.join(mount, own.lstrip("/"), name), 2)
        own = _own_cgroup("freezer")
        if own is not None and os.path.isdir(_V1_FREEZER) and os.access(_V1_FREEZER, os.W_OK):
            return cls(os.path.join(_V1_FREEZER, own.lstrip("/"), name), 1)
        return None

    @classmethod
    def at(cls, path: str) -> TaskCgroup:
        """The cgroup a runner recorded in the checkpoint header."""
        return cls(path, 1 if path.startswith(_V1_FREEZER + "/") else 2)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def create(self) -> bool:
        """Make the cgroup (its parent must exist: never recreate a container that is gone)."""
        try:
            os.mkdir(self.path, 0o755)
            return True
        except FileExistsError:
            return True
        except OSError as err:
            log.warning("Cannot create cgroup %s (%s); falling back to the environment marker",
                        self.path, err.strerror)
            return False

    def open_procs(self) -> int:
        """A descriptor on cgroup.procs: a forked child writes b"0" to it to join."""
        return os.open(os.path.join(self.path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)

    def pids(self) -> list[int]:
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as fp:
                return [int(line) for line in fp if line.strip()]
        except OSError:
            return []

    def _write(self, name: str, value: str) -> bool:
        try:
            with open(os.path.join(self.path, name), "w") as fp:
                fp.write(value)
            return True
        except OSError:
            return False

    def kill(self, timeout: float = 5.0) -> list[int]:
        """SIGKILL every member and wait (bounded) until the cgroup is empty; returns the pids."""
        victims = self.pids()
        if not victims:
            return []
        if self.version == 2 and self._write("cgroup.kill", "1"):
            pass
        elif self.version == 1:
            self._freeze_kill_thaw()
        else:
            for pid in victims:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.005)
        left = self.pids()
        if left:
            log.warning("cgroup %s still has %s after SIGKILL", self.path, left)
        return victims

    def _freeze_kill_thaw(self) -> None:
        self._write("freezer.state", "FROZEN")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                with open(os.path.join(self.path, "freezer.state")) as fp:
                    if fp.read().strip() == "FROZEN":
                        break
            except OSError:
                break
            time.sleep(0.002)
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self._write("freezer.state", "THAWED")

    def remove(self, timeout: float = 2.0) -> bool:
        """rmdir once empty (a SIGKILLed member needs a moment to leave)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.path)
                return True
            except FileNotFoundError:
                return True
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() >= deadline:
                    log.warning("Cannot remove cgroup %s: %s", self.path, err.strerror)
                    return False
            time.sleep(0.005)


def marked_pids(marker: str, uid: int | None) -> list[int]:
    """Processes (of `uid`, if given) whose environment carries the task's marker."""
    needle = ("%s=%s" % (MARKER_ENV, marker)).encode("utf-8", "surrogateescape")
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if uid is not None and os.stat("/proc/" + entry).st_uid != uid:
                continue
            with open("/proc/%s/environ" % entry, "rb") as fp:
                if needle in fp.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def kill_task(checkpoint_root: str, task_id: str, state: RunnerState | None = None,
              exclude: set[int] | None = None, remove: bool = True) -> list[int]:
    """SIGKILL whatever is left of a task through its recorded cgroup and its marker.

    `state` is the task's replayed checkpoint (read here when not given); `remove` deletes the
    cgroup afterwards (when the task is over, not between its stages). Returns the pids killed.
    """
    if state is None:
        try:
            state = CheckpointDispatcher.from_file(
                TaskPath(root=checkpoint_root, task_id=task_id).getpath("runner_checkpoint"))
        except (OSError, CheckpointDispatcher.Error, RecordIO.Error):
            state = None
    header = state.header if state is not None else None
    killed: list[int] = []
    if header is not None and header.cgroup:
        cgroup = TaskCgroup.at(header.cgroup)
        if cgroup.exists():
            killed += cgroup.kill()
            if remove:
                cgroup.remove()
    skip = set(exclude or ()) | {os.getpid()}
    for pid in marked_pids(task_marker(checkpoint_root, task_id), header.uid if header else None):
        if pid in skip:
            continue
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed
