"""Aurora's JSON endpoints (`/j/...`), plus the time-travel, timeline and history data.

Shapes are Aurora's (documented on the TaskObserver methods that build them). Differences,
deliberate: an unknown task id or process is a 404 `{"error": ...}` (Aurora raised a 500), bad
numbers and unknown list types are 400/404 with a message instead of an empty answer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from flask import Blueprint, Response, jsonify, request

from ..task_observer import TASK_TYPES, NotFound
from .app import observer
from .safe_paths import PathRefused

bp = Blueprint("json_api", __name__)


def _int(value: str | None, name: str, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise PathRefused(400, "Bad %s %r: give an integer" % (name, value)) from None


def _task_ids_param() -> list[str]:
    raw = request.args.get("task_id", "")
    return [task_id for task_id in unquote(raw).split(",") if task_id] if raw else []


def _at() -> int | None:
    """The `at` query parameter: a past moment in epoch milliseconds."""
    return _int(request.args.get("at"), "at (epoch milliseconds)")


@bp.route("/j/task_ids")
@bp.route("/j/task_ids/<which>")
@bp.route("/j/task_ids/<which>/<offset>")
@bp.route("/j/task_ids/<which>/<offset>/<num>")
def task_ids(which: str | None = None, offset: str | None = None, num: str | None = None) -> Response:
    if which is not None and which not in TASK_TYPES:
        raise NotFound("Unknown task type %r (use active, finished or all)" % which)
    number = _int(num, "num", 20)
    if number is not None and number < 0:
        raise PathRefused(400, "Bad num %r: it must not be negative" % num)
    return jsonify(observer().main(which, _int(offset, "offset", 0), number))


@bp.route("/j/task_id_count")
def task_id_count() -> Response:
    return jsonify(observer().task_id_count())


@bp.route("/j/task")
def tasks() -> Response:
    """`?task_id=a,b` (and optionally `at=<ms>`): `{id: task}`; no ids -> {} (Aurora)."""
    return jsonify(observer().tasks(_task_ids_param(), _at()))


@bp.route("/j/task/<task_id>")
def task(task_id: str) -> Response:
    """`{id: task}`; `?at=<ms>` rebuilds the task as it was at that moment."""
    return jsonify({task_id: observer().task(task_id, _at())})


@bp.route("/j/process/<task_id>")
@bp.route("/j/process/<task_id>/<process>")
@bp.route("/j/process/<task_id>/<process>/<run>")
def process(task_id: str, process: str | None = None, run: str | None = None) -> Response:
    obs = observer()
    if process is None:
        obs.summary(task_id)  # 404 for an unknown task
        return jsonify({})
    return jsonify(obs.process(task_id, process, _int(run, "run")))


@bp.route("/j/processes")
def processes() -> Response:
    return jsonify(observer().processes(_task_ids_param()))


@bp.route("/j/timeline/<task_id>")
def timeline(task_id: str) -> Response:
    """Every run of every process on one time axis (the task page's Gantt chart)."""
    return jsonify(observer().timeline(task_id))


@bp.route("/j/history/<task_id>")
def history(task_id: str) -> Response:
    """`{task_id, interval, samples: [{timestamp, cpu, ram, disk}]}` over the last hour."""
    obs = observer()
    sampler = obs.sampler
    data: dict[str, Any] = {"task_id": task_id, "samples": obs.resource_history(task_id),
                            "interval": sampler.interval if sampler is not None else None}
    return jsonify(data)
