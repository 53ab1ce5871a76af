"""Sandbox disk usage that stays cheap on deep trees.

Aurora started a `du` thread per task every minute; on a sandbox with a large tree (an unpacked
JDK, a node_modules) each walk took seconds of CPU, times the number of tasks. A `DiskCollector`
instead walks its tree in small steps under a time budget, resumes where it stopped on the next
step, and starts a new walk only `interval` seconds after the previous one finished. The reported
value is the last *complete* walk, so it never shows a half-counted tree. `NullDiskCollector` is
the off switch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

BLOCK_SIZE = 512  # st_blocks unit, whatever the file system block size
DEFAULT_INTERVAL = 60.0


def _file_bytes(entry: os.DirEntry[str], seen: set[tuple[int, int]]) -> int:
    """Allocated bytes of a regular file, counting a hard-linked inode once (as du does)."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return 0
    if st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return 0
        seen.add(key)
    return st.st_blocks * BLOCK_SIZE


class DiskCollector:
    """Allocated bytes of the regular files under `root`, measured incrementally."""

    def __init__(self, root: str, interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._root = root
        self._interval = interval
        self._clock = clock
        self._value = 0
        self._completed_at: float | None = None
        self._stack: list[str] | None = None
        self._partial = 0
        self._seen: set[tuple[int, int]] = set()

    @property
    def root(self) -> str:
        return self._root

    @property
    def enabled(self) -> bool:
        return True

    @property
    def value(self) -> int:
        """Bytes counted by the last complete walk (0 before the first one finishes)."""
        return self._value

    @property
    def completed_at(self) -> float | None:
        return self._completed_at

    def due(self) -> bool:
        """Whether a walk is in progress or a new one should start."""
        if self._stack is not None:
            return True
        return self._completed_at is None or self._clock() - self._completed_at >= self._interval

    def step(self, budget: float | None = 0.005) -> bool:
        """Walk for at most about `budget` seconds (None: to the end); True if a walk completed."""
        if not self.due():
            return False
        if self._stack is None:
            self._stack, self._partial, self._seen = [self._root], 0, set()
        deadline = None if budget is None else time.perf_counter() + budget
        stack, seen = self._stack, self._seen
        while stack:
            directory = stack.pop()
            try:
                with os.scandir(directory) as it:
                    for entry in it:
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                stack.append(entry.path)
                            elif entry.is_file(follow_symlinks=False):
                                self._partial += _file_bytes(entry, seen)
                        except OSError:
                            continue
            except OSError:
                pass  # vanished or unreadable: count what is left
            if deadline is not None and stack and time.perf_counter() >= deadline:
                return False
        self._value, self._completed_at = self._partial, self._clock()
        self._stack, self._seen = None, set()
        return True

    def collect(self) -> int:
        """Finish (or run) a whole walk now and return its result."""
        if self._stack is None:
            self._completed_at = None
        self.step(budget=None)
        return self._value


class NullDiskCollector(DiskCollector):
    """Disk collection turned off: always 0, never walks."""

    def __init__(self, root: str = "", interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(root, interval, clock)

    @property
    def enabled(self) -> bool:
        return False

    def due(self) -> bool:
        return False

    def collect(self) -> int:
        return 0


def du(path: str) -> int:
    """Allocated bytes of the regular files under `path`, in one go."""
    return du_split(path)[0]


def du_split(path: str, inner: str | None = None) -> tuple[int, int]:
    """`(bytes outside inner, bytes inside inner)` of the tree at `path`, in a single walk.

    Lets GC size a sandbox and the log directory inside it without walking the logs twice.
    `inner` is compared as a normalised path, without resolving symlinks.
    """
    inner = os.path.normpath(inner) if inner else None
    totals = [0, 0]
    seen: set[tuple[int, int]] = set()
    stack = [(os.path.normpath(path), 1 if inner == os.path.normpath(path) else 0)]
    while stack:
        directory, bucket = stack.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((entry.path, 1 if bucket or entry.path == inner else 0))
                        elif entry.is_file(follow_symlinks=False):
                            totals[bucket] += _file_bytes(entry, seen)
                    except OSError:
                        continue
        except OSError:
            continue
    return totals[0], totals[1]
