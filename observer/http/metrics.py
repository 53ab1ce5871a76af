"""Health, Aurora's `/vars` family, and `/metrics` in the Prometheus exposition format.

`/metrics` is built at scrape time from the observer's summaries and its sampler's newest sweep
(a custom collector on a private registry, so several apps in one process do not collide). Every
task has one `thermos_task_state` series (valued 1, labelled with its current state) and the
per-state totals are in `thermos_tasks`; process states, restarts and resource series exist for
active tasks only, so that thousands of finished tasks do not bloat every scrape.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..observed_task import process_state_name
from ..task_observer import NotFound, TaskObserver
from .app import observer

bp = Blueprint("metrics", __name__)


class ObserverCollector:
    """Yields the observer's metric families from a snapshot taken at collection time."""

    def __init__(self, task_observer: TaskObserver) -> None:
        self._observer = task_observer

    def collect(self) -> Iterator[Metric]:
        obs = self._observer
        task_state = GaugeMetricFamily("thermos_task_state", "1 for the task's current state",
                                       labels=["task_id", "state"])
        launched = GaugeMetricFamily("thermos_task_launch_timestamp_seconds",
                                     "When an active task's runner first recorded it", labels=["task_id"])
        cpu = GaugeMetricFamily("thermos_task_cpu_cores", "CPU of the task's processes (1.0 = one core)",
                                labels=["task_id"])
        rss = GaugeMetricFamily("thermos_task_rss_bytes", "Resident memory of the task's processes",
                                labels=["task_id"])
        disk = GaugeMetricFamily("thermos_task_disk_bytes", "Bytes allocated in the task's sandbox",
                                 labels=["task_id"])
        proc_state = GaugeMetricFamily("thermos_process_state", "1 for the state of the process's latest run",
                                       labels=["task_id", "process", "state"])
        restarts = GaugeMetricFamily("thermos_process_restarts", "Runs of the process after its first",
                                     labels=["task_id", "process"])
        proc_cpu = GaugeMetricFamily("thermos_process_cpu_cores", "CPU of a running process's tree",
                                     labels=["task_id", "process"])
        proc_rss = GaugeMetricFamily("thermos_process_rss_bytes",
                                     "Resident memory of a running process's tree",
                                     labels=["task_id", "process"])
        counts = {"active": 0, "finished": 0}
        by_state: dict[str, int] = {}
        for task_id, where, _name, summary in obs.snapshot():
            counts[where] += 1
            if not summary.available:
                continue
            state = summary.state or "UNKNOWN"
            by_state[state] = by_state.get(state, 0) + 1
            task_state.add_metric([task_id, state], 1)
            if where != "active":
                continue
            if summary.statuses:
                launched.add_metric([task_id], summary.statuses[0][1] / 1000.0)
            for run in summary.processes:
                proc_state.add_metric([task_id, run.name, process_state_name(run.state)], 1)
                restarts.add_metric([task_id, run.name], run.run)
            latest = obs.latest_sample(task_id)
            if latest is None:
                continue
            total = latest.aggregate()
            cpu.add_metric([task_id], total.process_sample.rate)
            rss.add_metric([task_id], total.process_sample.rss)
            disk.add_metric([task_id], total.disk_usage)
            for process, sample in latest.processes.items():
                proc_cpu.add_metric([task_id, process], sample.rate)
                proc_rss.add_metric([task_id, process], sample.rss)
        yield from (task_state, launched, cpu, rss, disk, proc_state, restarts, proc_cpu, proc_rss)
        states = GaugeMetricFamily("thermos_tasks", "Observed tasks by current state", labels=["state"])
        for state, count in sorted(by_state.items()):
            states.add_metric([state], count)
        yield states

        tasks = GaugeMetricFamily("thermos_observer_tasks", "Tasks observed", labels=["type"])
        for where, count in counts.items():
            tasks.add_metric([where], count)
        yield tasks
        yield GaugeMetricFamily("thermos_observer_refresh_seconds",
                                "Duration of the observer's last refresh pass",
                                value=obs.last_refresh_seconds)
        yield CounterMetricFamily("thermos_observer_refreshes", "Refresh passes completed",
                                  value=obs.refresh_count)
        yield CounterMetricFamily("thermos_observer_refresh_errors", "Refresh passes that failed",
                                  value=obs.refresh_errors)


def register(app: Flask, task_observer: TaskObserver) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ObserverCollector(task_observer))  # type: ignore[arg-type]
    ProcessCollector(namespace="thermos_observer", registry=registry)
    app.extensions["thermos_observer_registry"] = registry
    app.register_blueprint(bp)


def _version() -> str:
    try:
        return metadata.version("thermos")
    except metadata.PackageNotFoundError:
        return "unknown"


def variables() -> dict[str, Any]:
    """Aurora's exported variables (`sys.*`, `build.*`) plus the observer's own (`observer.*`)."""
    obs = observer()
    counts = obs.task_id_count()
    return {
        "sys.uptime": int(time.time() - current_app.config["STARTED_AT"]),
        "sys.argv": current_app.config["ARGV"],
        "sys.path": list(sys.path),
        "sys.version": sys.version,
        "sys.platform": sys.platform,
        "sys.executable": sys.executable,
        "sys.prefix": sys.prefix,
        "sys.exec_prefix": sys.exec_prefix,
        "sys.uname": list(platform.uname()),
        "sys.pid": os.getpid(),
        "build.version": _version(),
        "build.python": platform.python_version(),
        "observer.hostname": current_app.config["HOSTNAME"],
        "observer.polling_interval_secs": obs.polling_interval,
        "observer.refresh_seconds": obs.last_refresh_seconds,
        "observer.refresh_count": obs.refresh_count,
        "observer.refresh_errors": obs.refresh_errors,
        "observer.tasks.active": counts["active"],
        "observer.tasks.finished": counts["finished"],
        "observer.tasks.all": counts["all"],
    }


@bp.route("/health")
def health() -> Response:
    return Response("OK", mimetype="text/plain")


@bp.route("/vars")
def vars_text() -> Response:
    """`name value` lines, sorted by name."""
    lines = ["%s %s" % (name, value) for name, value in sorted(variables().items())]
    return Response("\n".join(lines) + "\n", mimetype="text/plain")


@bp.route("/vars/<name>")
def var(name: str) -> Response:
    found = variables()
    if name not in found:
        raise NotFound("Unknown exported variable: %s" % name)
    return Response("%s\n" % (found[name],), mimetype="text/plain")


@bp.route("/vars.json")
def vars_json() -> Response:
    return jsonify(variables())


@bp.route("/metrics")
def metrics() -> Response:
    registry = current_app.extensions["thermos_observer_registry"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
