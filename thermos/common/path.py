"""TaskPath: where a task's checkpoints, task records and logs live (byte-compatible with Aurora)."""

from __future__ import annotations

import os
from typing import Any

# Checkpoints and task records are private to the runner's user: task configs carry secrets.
CHECKPOINT_DIR_MODE = 0o700
CHECKPOINT_FILE_MODE = 0o600


class TaskPath:
    """A template resolver over the keys root, task_id, state, process, run and log_dir.

    Unset keys render as the literal ``%(key)s`` so a partially specified path can be refined later
    with `given()`; `getpath` refuses to return a path that still has holes.
    """

    class Error(Exception):
        pass

    class UnknownPath(Error):
        pass

    class UnderspecifiedPath(Error):
        pass

    KNOWN_KEYS = ("root", "task_id", "state", "process", "run", "log_dir")

    DIR_TEMPLATE: dict[str, tuple[str, ...]] = {
        "task_path": ("%(root)s", "tasks", "%(state)s", "%(task_id)s"),
        "checkpoint_path": ("%(root)s", "checkpoints", "%(task_id)s"),
        "runner_checkpoint": ("%(root)s", "checkpoints", "%(task_id)s", "runner"),
        "process_checkpoint": ("%(root)s", "checkpoints", "%(task_id)s", "coordinator.%(process)s"),
        "process_logbase": ("%(log_dir)s",),
        "process_logdir": ("%(log_dir)s", "%(process)s", "%(run)s"),
    }

    def __init__(self, **kw: Any) -> None:
        self._filename: str | None = kw.pop("filename", None)
        self._data: dict[str, Any] = {key: "%%(%s)s" % key for key in self.KNOWN_KEYS}
        self._set(kw)

    def _set(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if value is None:
                raise ValueError("Key %s is None" % key)
            self._data[key] = value

    def given(self, **kw: Any) -> TaskPath:
        """A copy with more keys filled in (and the same filename, if any)."""
        new = TaskPath(**self._data)
        new._filename = self._filename
        new._set(kw)
        return new

    def with_filename(self, filename: str) -> TaskPath:
        new = TaskPath(**self._data)
        new._filename = filename
        return new

    def getpath(self, pathname: str) -> str:
        if pathname not in self.DIR_TEMPLATE:
            raise self.UnknownPath("Internal error, unknown id: %s" % pathname)
        parts = list(self.DIR_TEMPLATE[pathname])
        if self._filename:
            parts.append(self._filename)
        path = os.path.join(*parts) % self._data
        if "%(" in path:
            raise self.UnderspecifiedPath("Tried to get %s but path underspecified: %s" % (pathname, path))
        return path
