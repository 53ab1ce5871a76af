"""TaskObserver: the one refresh loop behind every page, JSON answer and metric of the observer.

Aurora's observer replayed or re-monitored every task on its own thread and answered each request
by walking all of them (480 ms per refresh at 55 active + 2004 finished tasks). Here:

* One thread refreshes every `polling_interval` seconds: it lists `tasks/{active,finished}` of
  every detected root and `stat`s each runner checkpoint; only checkpoints that grew are read,
  from the byte where the last read stopped (`ObservedTask`).
* The results are kept as small immutable summaries, and the per-type lists sorted for paging
  are rebuilt only when tasks come, go or move, so a list request is a slice.
* One `ResourceSampler` thread samples the process trees of all active tasks (and walks their
  sandboxes for disk usage in small time-boxed steps), keeping an hour of history per task.
* A persistent summary cache in the observer's own state directory makes a restart stat the
  checkpoints instead of replaying them.

HTTP routes read only what this class exposes; none opens a checkpoint itself.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerState, TaskState
from thermos.monitoring.detector import PathDetector, TaskDetector
from thermos.monitoring.resource import DiskCollectorProvider, ProcessSample, ResourceSampler, TaskSample

from . import summary_cache, time_travel
from .observed_task import ObservedTask, ProcessRun, TaskSummary, process_state_name, summarize

log = logging.getLogger(__name__)

TASK_TYPES = ("active", "finished", "all")
HISTORY_SECONDS = 3600.0
CACHE_WRITE_INTERVAL = 30.0


class NotFound(LookupError):
    """A task, process or run the observer does not know; `str()` is the one-line message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class UnknownTask(NotFound):
    pass


class UnknownProcess(NotFound):
    pass


def _empty_sample() -> dict[str, Any]:
    sample = ProcessSample.empty().to_dict()
    sample["disk"] = 0
    return sample


class _SamplerView:
    """What the ResourceSampler asks of a task, answered from the observer's summary."""

    def __init__(self, task: ObservedTask) -> None:
        self._task = task

    def get_active_processes(self) -> list[tuple[ProcessStatus, int]]:
        return [(ProcessStatus(process=run.name, pid=run.pid, state=run.state,
                               start_time=run.start_time), run.run)
                for run in self._task.summary.processes
                if run.state == ProcessState.RUNNING and run.pid]

    def get_sandbox(self) -> str | None:
        return self._task.summary.sandbox


class TaskObserver:
    """Observes every task of every checkpoint root a `PathDetector` finds.

    `state_dir` holds the summary cache (None: no cache). `resource_collection=False` is Aurora's
    `--disable_task_resource_collection`: no sampler thread, and samples read as zeros.
    `disk_collection=False` leaves disk usage out of the sampler; `disk_collector_provider`
    replaces sandbox walks (e.g. with the Mesos agent's figures). `clock` is for tests.
    """

    def __init__(self, path_detector: PathDetector, state_dir: str | None = None,
                 polling_interval: float = 5.0, resource_collection: bool = True,
                 process_interval: float = ResourceSampler.DEFAULT_INTERVAL,
                 disk_interval: float = 60.0, disk_collection: bool = True,
                 disk_collector_provider: DiskCollectorProvider | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if polling_interval <= 0:
            raise ValueError("polling interval must be positive, got %r" % polling_interval)
        self._detector = path_detector
        self._state_dir = state_dir
        self._interval = polling_interval
        self._clock = clock
        self._tasks: dict[str, ObservedTask] = {}
        self._order: dict[str, tuple[str, ...]] = {kind: () for kind in TASK_TYPES}
        self._id_count = {"active": 0, "finished": 0, "all": 0}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cached: dict[tuple[str, str], summary_cache.CachedTask] = {}
        self._dirty = False
        self._cache_written = 0.0
        self.started_at = clock()
        self.last_refresh_seconds = 0.0
        self.refresh_count = 0
        self.refresh_errors = 0
        self._sampler: ResourceSampler | None = None
        if resource_collection:
            self._sampler = ResourceSampler(interval=process_interval, history=min(
                HISTORY_SECONDS, process_interval * 10000), disk_interval=disk_interval,
                disk_collection=disk_collection, disk_collector_provider=disk_collector_provider)

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Load the cache, refresh once (so the first page is complete), then refresh forever."""
        with self._lock:
            if self._thread is not None:
                return
            if self._state_dir:
                self._cached = summary_cache.load(self._state_dir)
            self.refresh()
            self._cached = {}
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="TaskObserver", daemon=True)
            self._thread.start()
        if self._sampler is not None:
            self._sampler.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads and write the cache."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        if self._sampler is not None:
            self._sampler.stop(timeout)
        self.save_cache()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a failed pass must not end observation
                self.refresh_errors += 1
                log.exception("Observer refresh failed")

    def roots_description(self) -> list[str]:
        """The roots found right now (for the startup line), or a note that there are none."""
        return self._detector.get_paths() or ["(no checkpoint roots found yet)"]

    @property
    def polling_interval(self) -> float:
        return self._interval

    @property
    def sampler(self) -> ResourceSampler | None:
        return self._sampler

    # ---- refresh ----------------------------------------------------------------------------

    def refresh(self) -> float:
        """One pass over every root; returns its duration in seconds."""
        started = time.perf_counter()
        seen: dict[str, tuple[str, str]] = {}
        for root in self._detector.get_paths():
            for where, task_id in TaskDetector(root).get_task_ids():
                if where not in ("active", "finished"):
                    continue
                previous = seen.get(task_id)
                # A task id in two roots is observed once (its first root); finished wins over
                # active within a root, as the runner writes finished before removing active.
                if previous is None or (previous[0] == root and where == "finished"):
                    seen[task_id] = (root, where)
        with self._lock:
            changed = self._reconcile(seen)
            for task in self._tasks.values():
                if task.update():
                    self._dirty = True
            if changed:
                self._reorder()
            counts = {"active": 0, "finished": 0}
            for _root, where in seen.values():
                counts[where] += 1
            self._id_count = {**counts, "all": counts["active"] + counts["finished"]}
        self._prune_histories()
        if self._state_dir and self._dirty and self._clock() - self._cache_written >= CACHE_WRITE_INTERVAL:
            self.save_cache()
        self.last_refresh_seconds = time.perf_counter() - started
        self.refresh_count += 1
        return self.last_refresh_seconds

    def _reconcile(self, seen: dict[str, tuple[str, str]]) -> bool:
        """Add new tasks, move active -> finished, forget vanished ones; True if the set changed."""
        changed = False
        for task_id in [t for t in self._tasks if t not in seen]:
            self._forget(task_id)
            changed = True
        for task_id, (root, where) in seen.items():
            task = self._tasks.get(task_id)
            if task is not None and task.root != root:
                self._forget(task_id)
                task = None
            if task is None:
                self._tasks[task_id] = self._discover(task_id, root, where)
                changed = True
            elif task.where != where:
                if where == "finished":
                    self._finish(task)
                else:
                    # Aurora asserted here; a task record moving back is reported and followed.
                    log.warning("Task %s moved from finished back to active", task_id)
                    task.where = where
                    self._start_sampling(task)
                task.mtime = self._mtime(task.record_path)
                changed = True
        return changed

    def _mtime(self, path: str) -> float:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return self._clock()

    def _discover(self, task_id: str, root: str, where: str) -> ObservedTask:
        task = ObservedTask(task_id, root, where, 0.0)
        cached = self._cached.get((root, task_id))
        if cached is not None and cached.where == where:
            task.mtime, task.name = cached.mtime, cached.name
            task.offset, task.ino = cached.offset, cached.ino
            task.head, task.blob, task.error = cached.head, cached.blob, cached.error
            task.summary = cached.summary
            if where == "active" and task.offset and not task.blob:
                task.offset, task.ino, task.head, task.error = 0, None, b"", None  # read it again
        else:
            task.mtime = self._mtime(task.record_path)
            task.load_name()
            self._dirty = True
        if where == "active":
            self._start_sampling(task)
        return task

    def _start_sampling(self, task: ObservedTask) -> None:
        if self._sampler is not None:
            self._sampler.add_task(task.task_id, _SamplerView(task))  # type: ignore[arg-type]

    def _finish(self, task: ObservedTask) -> None:
        """Active -> finished: stop sampling, keep the last hour of history for the charts."""
        task.where = "finished"
        task.finished_at = self._clock()
        task.compact()
        if self._sampler is not None and task.task_id in self._sampler.task_ids():
            task.history = self._history_rows(task.task_id)
            self._sampler.remove_task(task.task_id)

    def _forget(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)
        if self._sampler is not None:
            self._sampler.remove_task(task_id)
        self._dirty = True

    def _reorder(self) -> None:
        """The per-type lists, newest record first (Aurora's order), rebuilt on membership change."""
        ordered = sorted(self._tasks.values(), key=lambda t: (-t.mtime, t.task_id))
        self._order = {
            "active": tuple(t.task_id for t in ordered if t.where == "active"),
            "finished": tuple(t.task_id for t in ordered if t.where == "finished"),
            "all": tuple(t.task_id for t in ordered),
        }

    def _prune_histories(self) -> None:
        horizon = self._clock() - HISTORY_SECONDS
        with self._lock:
            for task in self._tasks.values():
                if task.history is not None and (task.finished_at or 0) < horizon:
                    task.history = None

    def save_cache(self) -> None:
        """Write the summary cache now (the refresh loop does it at most every 30 s when dirty)."""
        if not self._state_dir:
            return
        with self._lock:
            entries = {(t.root, t.task_id): summary_cache.CachedTask(
                t.where, t.mtime, t.name, t.offset, t.ino, t.head, t.blob, t.error, t.summary)
                for t in self._tasks.values()}
            self._dirty = False
            self._cache_written = self._clock()
        summary_cache.save(self._state_dir, entries)

    # ---- lookups ----------------------------------------------------------------------------

    def _get(self, task_id: str) -> ObservedTask:
        task = self._tasks.get(task_id)
        if task is None:
            raise UnknownTask("Unknown task_id: %s" % task_id)
        return task

    def has_task(self, task_id: str) -> bool:
        return task_id in self._tasks

    def summary(self, task_id: str) -> TaskSummary:
        """The task's TaskSummary (fields: available, user, hostname, sandbox, log_dir,
        launch_time_ms, ports, statuses [(state, ms)], processes [ProcessRun]). Raises UnknownTask."""
        return self._get(task_id).summary

    def task_type(self, task_id: str) -> str:
        """'active' or 'finished'. Raises UnknownTask."""
        return self._get(task_id).where

    def task_error(self, task_id: str) -> str | None:
        """Why the task's checkpoint could not be read to its end, or None."""
        return self._get(task_id).error

    def task_ids(self, task_type: str = "all") -> tuple[str, ...]:
        """Task ids of a type ('active', 'finished', 'all'), newest task record first."""
        if task_type not in TASK_TYPES:
            raise ValueError("unknown task type %r (use active, finished or all)" % task_type)
        return self._order[task_type]

    def task_id_count(self) -> dict[str, int]:
        """`{active, finished, all}`: task records found by the last refresh (Aurora's raw counts)."""
        return dict(self._id_count)

    def task_count(self) -> dict[str, int]:
        """`{active, finished, all}`: tasks observed (the paging total)."""
        return {kind: len(self._order[kind]) for kind in TASK_TYPES}

    # ---- samples ----------------------------------------------------------------------------

    def sample(self, task_id: str) -> dict[str, Any]:
        """`{cpu, ram, user, system, rss, vms, nice, status, threads, disk}` of the newest sweep
        (zeros for finished tasks, before the first sweep, or with collection disabled)."""
        task = self._get(task_id)
        if self._sampler is None or task.where != "active":
            return _empty_sample()
        try:
            _, result = self._sampler.sample(task_id)
        except KeyError:
            return _empty_sample()
        sample = result.process_sample.to_dict()
        sample["disk"] = result.disk_usage
        return sample

    def _sample_at(self, task_id: str, at: float) -> dict[str, Any]:
        if self._sampler is None:
            return _empty_sample()
        try:
            timestamp, result = self._sampler.sample_at(task_id, at)
        except KeyError:
            return _empty_sample()
        if abs(timestamp - at) > self._sampler.interval * 1.5:
            return _empty_sample()
        sample = result.process_sample.to_dict()
        sample["disk"] = result.disk_usage
        return sample

    def process_sample(self, task_id: str, process: str) -> dict[str, Any]:
        """The newest sample of a RUNNING process's tree (zeros if it is not running or sampled)."""
        task = self._get(task_id)
        if self._sampler is None or task.where != "active":
            return ProcessSample.empty().to_dict()
        try:
            return self._sampler.sample_by_process(task_id, process).to_dict()
        except (KeyError, ValueError):
            return ProcessSample.empty().to_dict()

    def latest_sample(self, task_id: str) -> TaskSample | None:
        """The newest sweep of an active task (per-process samples and disk), or None."""
        if self._sampler is None:
            return None
        try:
            # The newest entry only: `history()` would convert the whole hour on every scrape.
            entry = self._sampler._task(task_id).history.latest()
        except KeyError:
            return None
        return TaskSample.from_entry(*entry) if entry is not None else None

    def _history_rows(self, task_id: str) -> list[tuple[float, float, int, int]]:
        assert self._sampler is not None
        rows = []
        for sample in self._sampler.history(task_id):
            aggregate = sample.aggregate()
            rows.append((sample.timestamp, aggregate.process_sample.rate, aggregate.process_sample.rss,
                         aggregate.disk_usage))
        return rows

    def resource_history(self, task_id: str) -> list[dict[str, float]]:
        """The last hour of samples, oldest first: `[{timestamp (s), cpu (cores), ram (bytes),
        disk (bytes)}]`; a finished task keeps the history it had when it finished, for an hour."""
        task = self._get(task_id)
        if task.history is not None:
            rows = task.history
        elif self._sampler is not None and task.where == "active":
            try:
                rows = self._history_rows(task_id)
            except KeyError:
                rows = []
        else:
            rows = []
        return [{"timestamp": t, "cpu": cpu, "ram": ram, "disk": disk} for t, cpu, ram, disk in rows]

    # ---- Aurora's JSON shapes ---------------------------------------------------------------

    def main(self, task_type: str | None = None, offset: int | None = None,
             num: int | None = None) -> dict[str, Any]:
        """`{tasks: [row], type, offset, num, task_count}` (Aurora's `/j/task_ids`).

        Rows are `{task_id, name, role, launch_timestamp, state, state_timestamp, ports}` plus the
        sample fields; tasks whose checkpoint has no header yet are omitted. A negative offset
        counts from the end (Aurora: `offset % len` if `len > |offset|`, else 0).
        Raises ValueError for an unknown type.
        """
        task_type = task_type or "all"
        offset = offset or 0
        num = num or 20
        ids = self.task_ids(task_type)
        if offset < 0:
            offset = offset % len(ids) if len(ids) > abs(offset) else 0
        rows = [row for row in (self.task_row(task_id) for task_id in ids[offset:offset + num])
                if row is not None]
        return {"tasks": rows, "type": task_type, "offset": offset, "num": num,
                "task_count": len(ids)}

    def task_row(self, task_id: str) -> dict[str, Any] | None:
        """One list row (see `main`), or None if the task is unknown or has no header yet."""
        task = self._tasks.get(task_id)
        if task is None or not task.summary.available:
            return None
        summary = task.summary
        row: dict[str, Any] = {
            "task_id": task_id, "name": task.name, "role": summary.user,
            "launch_timestamp": summary.launch_timestamp, "state": summary.state,
            "state_timestamp": summary.state_timestamp, "ports": summary.ports,
            "type": task.where,
        }
        row.update(self.sample(task_id))
        return row

    def task(self, task_id: str, at_ms: int | None = None) -> dict[str, Any]:
        """Aurora's task dict: `{task_id, name, launch_timestamp, state, state_timestamp, user,
        resource_consumption, ports, processes {waiting, running, success, failed, killed: [names]},
        task}` plus `type`, `statuses` [{state, timestamp}], `sandbox`, `log_dir`, `error`.

        With `at_ms`, everything is as of that moment (the checkpoint replayed up to it; resource
        consumption from the history when it reaches back that far) and `at` echoes it.
        Returns {} for a task whose checkpoint has no header yet. Raises UnknownTask.
        """
        task = self._get(task_id)
        if at_ms is None:
            summary = task.summary
        else:
            summary = summarize(self.state_at(task_id, at_ms))
        if not summary.available:
            return {}
        record = task.task_json()
        name = task.name if task.name is not None else (record or {}).get("name")
        data: dict[str, Any] = {
            "task_id": task_id, "name": name, "launch_timestamp": summary.launch_timestamp,
            "state": summary.state, "state_timestamp": summary.state_timestamp, "user": summary.user,
            "resource_consumption": (self.sample(task_id) if at_ms is None
                                     else self._sample_at(task_id, at_ms / 1000.0)),
            "ports": summary.ports, "processes": summary.buckets(), "task": record,
            "type": task.where, "sandbox": summary.sandbox, "log_dir": summary.log_dir,
            "hostname": summary.hostname,
            "statuses": [{"state": state, "timestamp": ms / 1000.0} for state, ms in summary.statuses],
            "error": task.error,
        }
        if at_ms is not None:
            data["at"] = at_ms
        return data

    def tasks(self, task_ids: Iterable[str], at_ms: int | None = None) -> dict[str, dict[str, Any]]:
        """`{task_id: task(task_id, at_ms)}`. Raises UnknownTask naming every unknown id."""
        ids = list(task_ids)
        unknown = [task_id for task_id in ids if task_id not in self._tasks]
        if unknown:
            raise UnknownTask("Unknown task_id: %s" % ", ".join(unknown))
        return {task_id: self.task(task_id, at_ms) for task_id in ids}

    def task_statuses(self, task_id: str) -> list[tuple[str, float]]:
        """`[(state name, timestamp seconds)]` of every task transition."""
        return [(state, ms / 1000.0) for state, ms in self._get(task_id).summary.statuses]

    def raw_task(self, task_id: str) -> dict[str, Any] | None:
        """The task's JSON record as the runner wrote it, or None if it cannot be read."""
        return self._get(task_id).task_json()

    def state(self, task_id: str) -> RunnerState:
        """A private copy of the task's current RunnerState (Thrift struct)."""
        return self._get(task_id).state()

    def process_names(self, task_id: str) -> list[str]:
        """Processes of the task's config, in config order, then any others the checkpoint has."""
        task = self._get(task_id)
        names = []
        record = task.task_json() or {}
        for process in record.get("processes") or ():
            if isinstance(process, dict) and isinstance(process.get("name"), str):
                names.append(process["name"])
        for run in task.summary.processes:
            if run.name not in names:
                names.append(run.name)
        return names

    @staticmethod
    def _run_dict(name: str, run: int, status: ProcessStatus | ProcessRun) -> dict[str, Any]:
        """Aurora's process tuple: start/stop only when set, return_code only when non-zero."""
        data: dict[str, Any] = {"process_name": name, "process_run": run,
                                "state": process_state_name(status.state)}
        if status.start_time:
            data["start_time"] = status.start_time
        if status.stop_time:
            data["stop_time"] = status.stop_time
        if status.return_code:
            data["return_code"] = status.return_code
        return data

    def process(self, task_id: str, process: str, run: int | None = None) -> dict[str, Any]:
        """`{process_name, process_run, state, start_time?, stop_time?, return_code?, used?}` of
        one run (default: the latest; negative counts from the end); `used` (the resource sample)
        only while RUNNING. Raises UnknownTask, or UnknownProcess for an unknown process or run."""
        history, index = self._runs(task_id, process, run)
        data = self._run_dict(process, index, history[index])
        if history[index].state == ProcessState.RUNNING:
            data["used"] = self.process_sample(task_id, process)
        return data

    def process_runs(self, task_id: str, process: str) -> list[dict[str, Any]]:
        """Every run of a process, newest first, each as `process()` returns it plus `pid`."""
        task = self._get(task_id)
        history = (task.state().processes or {}).get(process)
        if not history:
            raise UnknownProcess("Invalid task/process combination: %s/%s" % (task_id, process))
        runs = []
        for index in range(len(history) - 1, -1, -1):
            data = self._run_dict(process, index, history[index])
            data["pid"] = history[index].pid
            if index == len(history) - 1 and history[index].state == ProcessState.RUNNING:
                data["used"] = self.process_sample(task_id, process)
            runs.append(data)
        return runs

    def processes(self, task_ids: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """`{task_id: {process: process(task_id, process)}}` (latest runs). Raises UnknownTask."""
        result = {}
        for task_id in task_ids:
            task = self._get(task_id)
            result[task_id] = {run.name: self.process(task_id, run.name) for run in task.summary.processes}
        return result

    # ---- time travel ------------------------------------------------------------------------

    def state_at(self, task_id: str, at_ms: int) -> RunnerState:
        """The task's RunnerState as of `at_ms` (epoch ms), by replaying its checkpoint."""
        task = self._get(task_id)
        try:
            return time_travel.state_at(task.checkpoint, at_ms)
        except OSError:
            return RunnerState(processes={})

    def timeline(self, task_id: str) -> dict[str, Any]:
        """Every run of every process for the Gantt chart; see `time_travel.timeline`. Adds
        `task_id`, `state` (current) and `now` (the observer's clock, the end of a live bar)."""
        task = self._get(task_id)
        try:
            data = time_travel.timeline(task.checkpoint)
        except OSError:
            data = {"start": None, "end": None, "statuses": [], "processes": {}}
        data.update(task_id=task_id, state=task.summary.state, now=self._clock())
        return data

    # ---- files ------------------------------------------------------------------------------

    def sandbox(self, task_id: str) -> str | None:
        """The sandbox directory from the runner header (None before it is written)."""
        return self._get(task_id).summary.sandbox

    def log_dir(self, task_id: str) -> str | None:
        """The log directory from the runner header (None before it is written)."""
        return self._get(task_id).summary.log_dir

    def log_run(self, task_id: str, process: str, run: int | None = None) -> int:
        """The index of a run of `process` (default the latest; negative counts from the end).
        Raises UnknownTask / UnknownProcess."""
        return self._runs(task_id, process, run)[1]

    def _runs(self, task_id: str, process: str, run: int | None) -> tuple[list[Any], int]:
        """A process's run history and the index `run` names (default the latest; negative
        counts from the end). Raises UnknownTask / UnknownProcess."""
        history = (self._get(task_id).state().processes or {}).get(process)
        if not history:
            raise UnknownProcess("Invalid task/process combination: %s/%s" % (task_id, process))
        index = -1 if run is None else run
        if not -len(history) <= index < len(history):
            raise UnknownProcess("Process %s of task %s has no run %d (it has %d)" % (
                process, task_id, index, len(history)))
        return history, index % len(history)

    # ---- metrics ----------------------------------------------------------------------------

    def snapshot(self) -> list[tuple[str, str, str | None, TaskSummary]]:
        """`[(task_id, type, name, summary)]` of every observed task, for exporters."""
        with self._lock:
            return [(t.task_id, t.where, t.name, t.summary) for t in self._tasks.values()]

    def state_names(self) -> tuple[list[str], list[str]]:
        """All task and process state names (for exporters that emit one series per state)."""
        return (list(TaskState._VALUES_TO_NAMES.values()), list(ProcessState._VALUES_TO_NAMES.values()))
