"""One observed task: where its files are, how far its checkpoint has been read, and a summary.

The observer keeps thousands of these, so a task holds its replayed `RunnerState` only in
Thrift-encoded form (a few hundred bytes) plus a small immutable `TaskSummary` that answers list
and JSON queries. When the checkpoint grows, the state is decoded, the new records are applied
from the byte where the last read stopped, and both are rebuilt; an unchanged checkpoint costs
one `stat` per refresh.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.recordio import HEADER, HEADER_SIZE, RecordIO, ThriftCodec, iter_records
from thermos.gen.thermos.ttypes import ProcessState, RunnerCkpt, RunnerState, TaskState

log = logging.getLogger(__name__)

HEAD_SIZE = 64
_DISPATCHER = CheckpointDispatcher()  # stateless without handlers: safe to share
_CODECS = threading.local()

# Aurora's buckets of a process's latest run (spec §6, /j/task "processes").
BUCKETS = ("waiting", "running", "success", "failed", "killed")
_BUCKET_OF = {
    None: "waiting", ProcessState.WAITING: "waiting", ProcessState.LOST: "waiting",
    ProcessState.FORKED: "running", ProcessState.RUNNING: "running",
    ProcessState.SUCCESS: "success", ProcessState.FAILED: "failed", ProcessState.KILLED: "killed",
}


def codec(kind: type) -> ThriftCodec:
    """A per-thread ThriftCodec (a codec reuses one protocol object, so it must not be shared)."""
    cache = getattr(_CODECS, "cache", None)
    if cache is None:
        cache = _CODECS.cache = {}
    found = cache.get(kind)
    if found is None:
        found = cache[kind] = ThriftCodec(kind)
    return found


def state_name(state: int | None) -> str | None:
    return TaskState._VALUES_TO_NAMES.get(state) if state is not None else None


def process_state_name(state: int | None) -> str:
    return ProcessState._VALUES_TO_NAMES.get(state, "WAITING") if state is not None else "WAITING"


@dataclass(frozen=True, slots=True)
class ProcessRun:
    """The latest run of one process, as the list, JSON and sampler need it."""

    name: str
    run: int  # index of this run (0-based); runs = run + 1
    state: int | None
    pid: int | None
    start_time: float | None
    stop_time: float | None
    return_code: int | None

    @property
    def bucket(self) -> str:
        return _BUCKET_OF.get(self.state, "waiting")


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """What a replayed runner checkpoint says, reduced to what pages and listings show.

    `available` is False until the runner header has been read (Aurora omitted such tasks from
    listings). Timestamps: `launch_timestamp` and `state_timestamp` are whole seconds, as Aurora
    reported them; `statuses` keeps `(state name, timestamp_ms)` for every task transition.
    """

    available: bool = False
    user: str | None = None
    hostname: str | None = None
    sandbox: str | None = None
    log_dir: str | None = None
    launch_time_ms: int | None = None
    ports: dict[str, int] = field(default_factory=dict)
    statuses: tuple[tuple[str, int], ...] = ()
    processes: tuple[ProcessRun, ...] = ()

    @property
    def state(self) -> str | None:
        return self.statuses[-1][0] if self.statuses else None

    @property
    def launch_timestamp(self) -> int:
        return self.statuses[0][1] // 1000 if self.statuses else 0

    @property
    def state_timestamp(self) -> int:
        """When the task last entered its current state (Aurora's rule: 0 if it never left it)."""
        if not self.statuses:
            return 0
        current, previous, stamp = self.statuses[-1][0], self.statuses[0][0], 0
        for name, timestamp_ms in self.statuses:
            if name == current and previous != current:
                stamp = timestamp_ms // 1000
            previous = name
        return stamp

    def process(self, name: str) -> ProcessRun | None:
        for run in self.processes:
            if run.name == name:
                return run
        return None

    def buckets(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {bucket: [] for bucket in BUCKETS}
        for run in self.processes:
            result[run.bucket].append(run.name)
        return result


EMPTY_SUMMARY = TaskSummary()


def summary_to_json(summary: TaskSummary) -> list[Any]:
    """A TaskSummary as plain JSON data (for the summary cache)."""
    return [summary.available, summary.user, summary.hostname, summary.sandbox, summary.log_dir,
            summary.launch_time_ms, summary.ports, [list(s) for s in summary.statuses],
            [[r.name, r.run, r.state, r.pid, r.start_time, r.stop_time, r.return_code]
             for r in summary.processes]]


def summary_from_json(data: list[Any]) -> TaskSummary:
    """The inverse of summary_to_json; ValueError/TypeError for data of another shape."""
    available, user, hostname, sandbox, log_dir, launch, ports, statuses, processes = data
    if not isinstance(ports, dict):
        raise ValueError("ports must be an object")
    return TaskSummary(
        available=bool(available), user=user, hostname=hostname, sandbox=sandbox, log_dir=log_dir,
        launch_time_ms=launch, ports=ports,
        statuses=tuple((sys.intern(str(name)), int(ms)) for name, ms in statuses),
        processes=tuple(ProcessRun(str(name), int(run), state, pid, start, stop, rc)
                        for name, run, state, pid, start, stop, rc in processes))


def summarize(state: RunnerState) -> TaskSummary:
    header = state.header
    if header is None:
        return EMPTY_SUMMARY
    statuses = tuple((TaskState._VALUES_TO_NAMES.get(s.state, "UNKNOWN"), s.timestamp_ms or 0)
                     for s in state.statuses or ())
    runs = []
    for name, history in sorted((state.processes or {}).items()):
        if not history:
            runs.append(ProcessRun(name, 0, None, None, None, None, None))
            continue
        last = history[-1]
        runs.append(ProcessRun(name, len(history) - 1, last.state, last.pid, last.start_time,
                               last.stop_time, last.return_code))
    return TaskSummary(
        available=True, user=header.user, hostname=header.hostname, sandbox=header.sandbox,
        log_dir=header.log_dir, launch_time_ms=header.launch_time_ms, ports=dict(header.ports or {}),
        statuses=statuses, processes=tuple(runs))


class ObservedTask:
    """A task of one checkpoint root, read incrementally.

    Only the refresh thread calls `update`; request threads read `summary`, `where`, `mtime` (plain
    attribute reads of immutable values) and call `state()`, which decodes a private copy.
    """

    __slots__ = ("task_id", "root", "where", "mtime", "name", "checkpoint", "offset", "ino", "head",
                 "blob", "summary", "error", "finished_at", "history")

    def __init__(self, task_id: str, root: str, where: str, mtime: float) -> None:
        self.task_id = task_id
        self.root = root
        self.where = where  # "active" or "finished": which tasks/ directory holds its record
        self.mtime = mtime  # of that record when it was discovered there (Aurora's sort key)
        self.name: str | None = None  # the task's name, from its record
        self.checkpoint = os.path.join(root, "checkpoints", task_id, "runner")
        self.offset = 0  # bytes of whole records applied
        self.ino: int | None = None  # inode of the checkpoint those bytes came from
        self.head = b""  # its first bytes: a file replaced under a reused inode starts differently
        self.blob = b""  # the encoded RunnerState after `offset` bytes (active tasks only)
        self.summary: TaskSummary = EMPTY_SUMMARY
        self.error: str | None = None  # why reading stopped (corrupt record), or None
        self.finished_at: float | None = None
        self.history: list[tuple[float, float, int, int]] | None = None  # kept after finishing

    @property
    def record_path(self) -> str:
        return os.path.join(self.root, "tasks", self.where, self.task_id)

    def load_name(self) -> None:
        """The task's name from its JSON record (read once; the record never changes)."""
        try:
            with open(self.record_path, "rb") as fp:
                data = json.load(fp)
            name = data.get("name") if isinstance(data, dict) else None
            self.name = name if isinstance(name, str) else None
        except (OSError, ValueError):
            self.name = None

    def task_json(self) -> dict | None:
        """The task's full JSON record (interpolated by the runner), or None if unreadable."""
        for where in (self.where, "finished", "active"):
            try:
                with open(os.path.join(self.root, "tasks", where, self.task_id), "rb") as fp:
                    data = json.load(fp)
                return data if isinstance(data, dict) else None
            except FileNotFoundError:
                continue
            except (OSError, ValueError):
                return None
        return None

    def state(self) -> RunnerState:
        """A private copy of the replayed RunnerState (empty before anything was read).

        Finished tasks do not keep their state in memory (thousands of them would cost megabytes
        and they are rarely looked at): theirs is replayed from the bytes already read, on demand.
        """
        if self.blob:
            state = codec(RunnerState).decode(self.blob)
            if state.processes is None:
                state.processes = {}
            return state
        state = RunnerState(processes={})
        if self.offset:
            try:
                with open(self.checkpoint, "rb") as fp:
                    data = fp.read(self.offset)
            except OSError as err:
                log.warning("Could not read checkpoint %s: %s", self.checkpoint, err)
                return state
            self._apply(state, data, record_errors=False)
        return state

    def compact(self) -> None:
        """Drop the in-memory state of a finished task (`state()` replays it when asked)."""
        if self.where == "finished":
            self.blob = b""

    def update(self) -> bool:
        """Apply records appended since the last read; True if anything changed."""
        try:
            st = os.stat(self.checkpoint)
        except OSError:
            return False
        if self.ino is not None and (st.st_ino != self.ino or st.st_size < self.offset):
            self._restart()
        self.ino = st.st_ino
        if st.st_size <= self.offset or (self.error is not None and st.st_size == self.offset):
            return False
        try:
            with open(self.checkpoint, "rb") as fp:
                if self.head and fp.read(len(self.head)) != self.head:
                    self._restart()
                elif self.error is not None:
                    return False
                fp.seek(self.offset)
                data = fp.read()
        except OSError as err:
            log.warning("Could not read checkpoint %s: %s", self.checkpoint, err)
            return False
        if self.offset == 0:
            self.head = data[:HEAD_SIZE]
        state = self.state()
        consumed = self._apply(state, data)
        if consumed == 0 and self.error is None:
            return False
        self.offset += consumed
        self.blob = codec(RunnerState).encode(state) if self.where == "active" else b""
        self.summary = summarize(state)
        return True

    def _restart(self) -> None:
        log.info("Checkpoint %s was replaced; reading it again from the start", self.checkpoint)
        self.offset, self.head, self.blob, self.error, self.summary = 0, b"", b"", None, EMPTY_SUMMARY

    def _apply(self, state: RunnerState, data: bytes, record_errors: bool = True) -> int:
        """Dispatch the whole records of `data` into `state`; the number of bytes consumed."""
        offset = 0
        try:
            for record in iter_records(io.BytesIO(data), codec(RunnerCkpt), self.checkpoint):
                end = offset + HEADER_SIZE + HEADER.unpack_from(data, offset)[0]
                try:
                    _DISPATCHER.dispatch(state, record)
                except CheckpointDispatcher.Error as err:
                    if record_errors:
                        self._fail("%s (record at byte %d)" % (err, self.offset + offset))
                    break
                offset = end
        except RecordIO.Error as err:
            if record_errors:
                self._fail("%s (at byte %d)" % (str(err).rsplit(" in ", 1)[0], self.offset + offset))
        return offset

    def _fail(self, reason: str) -> None:
        self.error = "checkpoint %s is corrupt: %s" % (self.checkpoint, reason)
        log.error("%s", self.error)
