"""Finding checkpoint roots, the tasks inside them, and each task's checkpoints and logs.

Everything here lists directories with `os.scandir` instead of globbing and regex-matching paths:
the observer and `thermos status` call it for thousands of tasks per refresh, and a scandir of a
directory is one syscall batch where a glob is one per entry plus a regex per result.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from thermos.common.constants import DEFAULT_CHECKPOINT_ROOT, DEFAULT_MESOS_ROOT

TASK_STATES = ("active", "finished")
LOG_NAMES = ("stdout", "stderr")


def _subdirs(path: str, skip_symlinks: bool = False) -> list[os.DirEntry[str]]:
    """Directory entries of `path` that are directories; [] if `path` cannot be listed."""
    try:
        with os.scandir(path) as it:
            entries = []
            for entry in it:
                try:
                    if skip_symlinks and entry.is_symlink():
                        continue
                    if entry.is_dir():
                        entries.append(entry)
                except OSError:
                    continue
            return entries
    except OSError:
        return []


class PathDetector:
    """Something that knows where checkpoint roots are."""

    def get_paths(self) -> list[str]:
        raise NotImplementedError


class FixedPathDetector(PathDetector):
    """A single, known checkpoint root."""

    def __init__(self, path: str = DEFAULT_CHECKPOINT_ROOT) -> None:
        if not isinstance(path, str):
            raise TypeError("FixedPathDetector path must be a string, got %s" % type(path).__name__)
        self._path = path

    def get_paths(self) -> list[str]:
        return [self._path]


class ChainedPathDetector(PathDetector):
    """The union of several detectors, each root once, in first-seen order."""

    def __init__(self, *detectors: PathDetector) -> None:
        for detector in detectors:
            if not isinstance(detector, PathDetector):
                raise TypeError("Expected a PathDetector, got %s" % type(detector).__name__)
        self._detectors = detectors

    def get_paths(self) -> list[str]:
        seen: dict[str, None] = {}
        for detector in self._detectors:
            for path in detector.get_paths():
                seen.setdefault(path, None)
        return list(seen)


class MesosPathDetector(PathDetector):
    """Checkpoint roots of Aurora executors under a Mesos agent's work_dir.

    Walks `<work_dir>/slaves/*/frameworks/*/executors/*/runs/*/<sandbox_path>` (mesos.md §5.2).
    The agent's `latest` symlinks are skipped, so each executor run is found exactly once (Aurora's
    detector followed them and counted the newest run twice).
    """

    DEFAULT_SANDBOX_PATH = "checkpoints"

    def __init__(self, root: str = DEFAULT_MESOS_ROOT, sandbox_path: str = DEFAULT_SANDBOX_PATH) -> None:
        if not isinstance(root, str):
            raise TypeError("MesosPathDetector root must be a string, got %s" % type(root).__name__)
        self._root = root
        self._sandbox_path = sandbox_path

    def iter_runs(self) -> Iterator[str]:
        """Every executor run directory (`.../runs/<container_id>`)."""
        level = [os.path.join(self._root, "slaves")]
        for name in ("frameworks", "executors", "runs"):
            level = [os.path.join(entry.path, name)
                     for parent in level for entry in _subdirs(parent, skip_symlinks=True)]
        for parent in level:
            for entry in _subdirs(parent, skip_symlinks=True):
                yield entry.path

    def get_paths(self) -> list[str]:
        paths = []
        for run in self.iter_runs():
            candidate = os.path.join(run, self._sandbox_path)
            if os.path.isdir(candidate):
                paths.append(candidate)
        return paths


class TaskDetector:
    """The tasks of one checkpoint root, and the files each of them owns."""

    def __init__(self, root: str) -> None:
        self._root = root

    @property
    def root(self) -> str:
        return self._root

    def get_task_ids(self, state: str | None = None) -> Iterator[tuple[str, str]]:
        """Yield `(state, task_id)` for each task JSON under `tasks/`, optionally of one state."""
        tasks_dir = os.path.join(self._root, "tasks")
        states: Iterable[str]
        if state is None:
            states = sorted(entry.name for entry in _subdirs(tasks_dir))
        else:
            states = (state,)
        for task_state in states:
            try:
                with os.scandir(os.path.join(tasks_dir, task_state)) as it:
                    names = sorted(entry.name for entry in it if not entry.name.startswith("."))
            except OSError:
                continue
            for task_id in names:
                yield task_state, task_id

    # The paths below are TaskPath's templates (spec §1.1) joined directly: these are called for
    # every task of every listing, and a TaskPath costs several dict copies per path.

    def get_checkpoint(self, task_id: str) -> str:
        """The runner checkpoint path of `task_id` (whether or not it exists)."""
        return os.path.join(self._root, "checkpoints", task_id, "runner")

    def get_task_path(self, task_id: str, state: str) -> str:
        return os.path.join(self._root, "tasks", state, task_id)

    def get_process_checkpoints(self, task_id: str) -> list[str]:
        """Paths of every `coordinator.<process>` checkpoint of `task_id`."""
        ckpt_dir = os.path.join(self._root, "checkpoints", task_id)
        try:
            with os.scandir(ckpt_dir) as it:
                return sorted(entry.path for entry in it if entry.name.startswith("coordinator."))
        except OSError:
            return []

    def get_process_runs(self, task_id: str, log_dir: str) -> Iterator[tuple[str, int]]:
        """Yield `(process, run)` for every `<log_dir>/<process>/<run>` directory."""
        for process in sorted(_subdirs(log_dir), key=lambda entry: entry.name):
            runs = sorted(int(entry.name) for entry in _subdirs(process.path) if entry.name.isdigit())
            for run in runs:
                yield process.name, run

    def get_process_logs(self, task_id: str, log_dir: str) -> Iterator[str]:
        """Yield the existing stdout/stderr files of every run of every process."""
        for process, run in self.get_process_runs(task_id, log_dir):
            run_dir = os.path.join(log_dir, process, str(run))
            for name in LOG_NAMES:
                path = os.path.join(run_dir, name)
                if os.path.exists(path):
                    yield path
