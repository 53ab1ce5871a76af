"""The observer's persistent summary cache: how far each checkpoint was read, and the state so far.

A restart then stats each checkpoint instead of replaying it: a checkpoint whose inode and size
match is not read at all, one that grew is read from the cached offset, one that was replaced is
read again from the start. The file is only a cache: a missing, unreadable, corrupt or
other-version file is ignored (and rewritten), so deleting it is always safe. It lives in the
observer's own state directory, never inside a checkpoint root (readers only read there).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass

from thermos.common.atomic import write_atomically

from .observed_task import TaskSummary, summary_from_json, summary_to_json

log = logging.getLogger(__name__)

FORMAT = "thermos-observer-summary-cache"
VERSION = 2
FILENAME = "observer-summary-cache.json"


@dataclass(frozen=True, slots=True)
class CachedTask:
    where: str
    mtime: float
    name: str | None
    offset: int
    ino: int | None
    head: bytes
    blob: bytes  # the encoded RunnerState, for active tasks (whose checkpoints still grow)
    error: str | None
    summary: TaskSummary


def cache_path(state_dir: str) -> str:
    return os.path.join(state_dir, FILENAME)


def load(state_dir: str) -> dict[tuple[str, str], CachedTask]:
    """The cached tasks by `(root, task_id)`; {} (logged) if there is no usable cache."""
    path = cache_path(state_dir)
    try:
        with open(path, "rb") as fp:
            data = json.load(fp)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("Ignoring the observer cache %s (%s); it will be rebuilt", path, err)
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        log.warning("Ignoring the observer cache %s (not version %d of %s); it will be rebuilt",
                    path, VERSION, FORMAT)
        return {}
    found: dict[tuple[str, str], CachedTask] = {}
    try:
        for root, task_id, where, mtime, name, offset, ino, head, blob, error, summary in data["tasks"]:
            if not (isinstance(root, str) and isinstance(task_id, str) and where in ("active", "finished")
                    and isinstance(offset, int) and offset >= 0):
                raise ValueError("bad entry for task %r" % (task_id,))
            found[(root, task_id)] = CachedTask(where, float(mtime), name, offset, ino,
                                                base64.b64decode(head, validate=True),
                                                base64.b64decode(blob, validate=True), error,
                                                summary_from_json(summary))
    except (KeyError, TypeError, ValueError) as err:
        log.warning("Ignoring the observer cache %s (%s); it will be rebuilt", path, err)
        return {}
    return found


def save(state_dir: str, tasks: dict[tuple[str, str], CachedTask]) -> None:
    """Replace the cache file atomically; a failure is logged (the cache is an optimisation)."""
    rows = [[root, task_id, t.where, t.mtime, t.name, t.offset, t.ino,
             base64.b64encode(t.head).decode("ascii"), base64.b64encode(t.blob).decode("ascii"), t.error,
             summary_to_json(t.summary)]
            for (root, task_id), t in tasks.items()]
    payload = json.dumps({"format": FORMAT, "version": VERSION, "tasks": rows},
                         separators=(",", ":")).encode()
    try:
        write_atomically(cache_path(state_dir), payload, durable=False)  # a lost cache is rebuilt
    except OSError as err:
        log.warning("Could not write the observer cache in %s: %s", state_dir, err)
