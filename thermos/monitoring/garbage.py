"""Garbage collection of finished tasks: what a task occupies, how to erase it, and which to erase.

Fixed against Aurora's removed implementation (spec thermos.md §11.2):
* finished tasks are plain task ids (Aurora passed `(state, task_id)` tuples around as ids);
* the space budget keeps the *newest* tasks that fit and collects the older ones (Aurora walked
  oldest-first and so collected the newest);
* an active task is never selected, and the erase methods refuse to touch one;
* logs are the whole log directory (rotated `stdout.N` backups included), and a log directory
  inside the sandbox is neither counted as data nor deleted with the data;
* sizes are only measured when a space budget needs them, so age and count policies over
  thousands of tasks cost one `stat` per task;
* erasing never follows a symlink out of the task's own directories (Aurora's `rmtree` of paths
  from a checkpoint did): it is done by `thermos.gc.collect` from trusted directory descriptors.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from thermos.common.path import TaskPath
from thermos.common.recordio import RecordIO, ThriftRecordReader
from thermos.gen.thermos.ttypes import RunnerCkpt, RunnerHeader
from thermos.monitoring.detector import PathDetector, TaskDetector
from thermos.monitoring.disk import BLOCK_SIZE, du, du_split

log = logging.getLogger(__name__)


def read_header(checkpoint: str, max_records: int = 16) -> RunnerHeader | None:
    """The RunnerHeader near the start of a runner checkpoint, without replaying the rest."""
    try:
        with open(checkpoint, "rb") as fp:
            reader = ThriftRecordReader(fp, RunnerCkpt)
            for _ in range(max_records):
                record = reader.try_read()
                if record is None:
                    return None
                if record.runner_header is not None:
                    return record.runner_header
    except (OSError, RecordIO.Error) as err:
        log.debug("Cannot read the header of %s: %s", checkpoint, err)
    return None


def _bsize(path: str) -> int:
    try:
        return os.lstat(path).st_blocks * BLOCK_SIZE
    except OSError:
        return 0


def _files_under(path: str) -> Iterator[str]:
    for directory, _dirs, files in os.walk(path):
        for name in files:
            yield os.path.join(directory, name)


def _is_under(path: str, parent: str, resolve: bool = True) -> bool:
    """Whether `path` lies strictly inside `parent` (symlinks resolved unless `resolve` is False)."""
    norm = os.path.realpath if resolve else os.path.normpath
    path, parent = norm(path), norm(parent)
    return path != parent and path.startswith(parent.rstrip(os.sep) + os.sep)


class TaskGarbageCollector:
    """The files of one task in one checkpoint root, and how to erase them."""

    class ActiveTask(Exception):
        """Raised instead of erasing anything of a task that is still active."""

    class UnsafePath(Exception):
        """Raised instead of removing a directory such as / or $HOME, or one reached through a symlink."""

    def __init__(self, root: str, task_id: str, **files_options: Any) -> None:
        self._root = root
        self._files_options = files_options  # for thermos.gc.task_files.TaskFiles (sandbox_roots)
        self._files: Any = None
        self._task_id = task_id
        self._detector = TaskDetector(root)
        self._path = TaskPath(root=root, task_id=task_id)
        self._header: RunnerHeader | None = None
        self._header_read = False

    @property
    def task_id(self) -> str:
        return self._task_id

    @property
    def root(self) -> str:
        return self._root

    @property
    def header(self) -> RunnerHeader | None:
        if not self._header_read:
            self._header = read_header(self._detector.get_checkpoint(self._task_id))
            self._header_read = True
        return self._header

    @property
    def is_active(self) -> bool:
        return os.path.exists(self._path.given(state="active").getpath("task_path"))

    def get_age(self) -> float:
        """The mtime of the runner checkpoint (0 if it is missing): when the task last changed."""
        try:
            return os.stat(self._detector.get_checkpoint(self._task_id)).st_mtime
        except OSError:
            return 0.0

    def _log_dir(self) -> str | None:
        header = self.header
        return header.log_dir if header is not None and header.log_dir else None

    def _sandbox(self) -> str | None:
        header = self.header
        return header.sandbox if header is not None and header.sandbox else None

    def get_metadata(self, with_size: bool = True) -> Iterator[str | tuple[str, int]]:
        """The finished task JSON, the runner checkpoint and every coordinator checkpoint."""
        paths = [os.path.join(self._root, "tasks", "finished", self._task_id),
                 self._detector.get_checkpoint(self._task_id)]
        paths += self._detector.get_process_checkpoints(self._task_id)
        for path in paths:
            yield (path, _bsize(path)) if with_size else path

    def get_logs(self, with_size: bool = True) -> Iterator[str | tuple[str, int]]:
        """Every file under the task's log directory, rotated backups included."""
        log_dir = self._log_dir()
        if log_dir:
            for path in _files_under(log_dir):
                yield (path, _bsize(path)) if with_size else path

    def get_data(self, with_size: bool = True) -> Iterator[str | tuple[str, int]]:
        """Every file in the sandbox, except the log directory when it lives inside it."""
        sandbox, log_dir = self._sandbox(), self._log_dir()
        if not sandbox:
            return
        for directory, dirs, files in os.walk(sandbox):
            if log_dir:
                dirs[:] = [d for d in dirs if os.path.join(directory, d) != log_dir]
            for name in files:
                path = os.path.join(directory, name)
                yield (path, _bsize(path)) if with_size else path

    def metadata_size(self) -> int:
        return sum(_bsize(path) for path in self.get_metadata(with_size=False))  # type: ignore[arg-type]

    def log_size(self) -> int:
        return self.sizes()[1]

    def data_size(self) -> int:
        return self.sizes()[2]

    def sizes(self) -> tuple[int, int, int]:
        """`(metadata, logs, data)` bytes, walking the sandbox and logs once."""
        sandbox, log_dir = self._sandbox(), self._log_dir()
        logs = data = 0
        if sandbox:
            data, logs = du_split(sandbox, log_dir)
        if log_dir and not (sandbox and _is_under(log_dir, sandbox, resolve=False)):
            logs = du(log_dir)
        return self.metadata_size(), logs, data

    # ---- deletion: done by thermos.gc.collect, from trusted directory descriptors -------------
    # Deletion lives in the gc layer (monitoring only reads); these keep the Aurora-era methods.
    # Each returns what it freed (a thermos.gc.safe_delete.Freed) and raises ActiveTask or
    # UnsafePath, with one line saying why, instead of deleting anything questionable.

    def _erase(self, what: str) -> Any:
        from thermos.gc import collect
        from thermos.gc.task_files import TaskFiles

        if self._files is None:
            try:
                self._files = TaskFiles(self._root, self._task_id, **self._files_options)
            except collect.UnsafePath as err:
                raise self.UnsafePath(str(err)) from None
        try:
            return getattr(collect, what)(self._files)
        except collect.UnsafePath as err:
            raise self.UnsafePath(str(err)) from None
        except collect.ActiveTask as err:
            raise self.ActiveTask(str(err)) from None

    def erase_task(self) -> Any:
        return self._erase("erase_task")

    def erase_metadata(self) -> Any:
        return self._erase("erase_metadata")

    def erase_logs(self) -> Any:
        return self._erase("erase_logs")

    def erase_data(self) -> Any:
        return self._erase("erase_data")


class TaskTuple(NamedTuple):
    """A collectable task. Sizes are None when no space budget asked for them."""

    checkpoint_root: str
    task_id: str
    age: float
    metadata_size: int | None
    log_size: int | None
    data_size: int | None


class GarbageCollectionPolicy:
    """Chooses the finished tasks to collect: too old, beyond the space budget, beyond the count.

    `max_age` is in seconds, `max_space` in bytes; None (the default) means no limit. The space a
    task occupies is its data, plus its metadata and logs when `include_metadata` / `include_logs`
    say they will be deleted too.
    """

    def __init__(self, path_detector: PathDetector, max_age: float | None = None,
                 max_space: int | None = None, max_tasks: int | None = None,
                 include_metadata: bool = True, include_logs: bool = True, verbose: bool = False,
                 logger: Callable[[str], object] = print, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(path_detector, PathDetector):
            raise TypeError("Expected a PathDetector, got %s" % type(path_detector).__name__)
        for name, value in (("max_age", max_age), ("max_space", max_space), ("max_tasks", max_tasks)):
            if value is not None and value < 0:
                raise ValueError("%s must not be negative, got %r" % (name, value))
        self._detector = path_detector
        self._max_age = max_age
        self._max_space = max_space
        self._max_tasks = max_tasks
        self._include_metadata = include_metadata
        self._include_logs = include_logs
        self._verbose = verbose
        self._logger = logger
        self._clock = clock

    def log(self, message: str) -> None:
        if self._verbose:
            self._logger(message)

    def get_finished_tasks(self) -> Iterator[tuple[str, str]]:
        """`(root, task_id)` of every finished task that is not also marked active."""
        for root in self._detector.get_paths():
            detector = TaskDetector(root)
            active = {task_id for _, task_id in detector.get_task_ids(state="active")}
            for _, task_id in detector.get_task_ids(state="finished"):
                if task_id not in active:
                    yield root, task_id

    def run(self) -> list[TaskTuple]:
        """The tasks to collect, oldest first."""
        now = self._clock()
        collectors = [TaskGarbageCollector(root, task_id) for root, task_id in self.get_finished_tasks()]
        ages = {id(c): now - c.get_age() for c in collectors}
        newest_first = sorted(collectors, key=lambda c: ages[id(c)])
        selected: set[int] = set()
        sizes: dict[int, tuple[int, int, int]] = {}

        if self._max_age is not None:
            selected.update(id(c) for c in collectors if ages[id(c)] > self._max_age)
        self.log("After age filter: %d tasks" % len(selected))

        if self._max_space is not None:
            used = 0
            for c in newest_first:
                if id(c) in selected:
                    continue
                metadata, logs, data = sizes[id(c)] = c.sizes()
                used += data
                used += metadata if self._include_metadata else 0
                used += logs if self._include_logs else 0
                if used > self._max_space:
                    selected.add(id(c))
        self.log("After size filter: %d tasks" % len(selected))

        if self._max_tasks is not None:
            kept = [c for c in newest_first if id(c) not in selected]
            selected.update(id(c) for c in kept[self._max_tasks:])
        self.log("After total task filter: %d tasks" % len(selected))

        chosen = []
        for c in reversed(newest_first):
            if id(c) in selected:
                metadata, logs, data = sizes.get(id(c), (None, None, None))
                chosen.append(TaskTuple(c.root, c.task_id, ages[id(c)], metadata, logs, data))
        return chosen
