"""The observer's HTML pages, at Aurora's URLs.

Every page is a Jinja template rendered from what `TaskObserver` exposes (autoescaped; no HTML
is assembled in Python). Pages work without JavaScript; `static/observer.js` then keeps them
live: the task list refreshes itself, the task page draws its charts and process timeline from
JSON embedded in the page and re-fetches the page to move in time, and the log viewer follows a
file through `/logdata` and `/filedata`. Unknown tasks, processes, runs and paths are 404 pages
that say what was not found (Aurora answered 500).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NoReturn
from urllib.parse import quote

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from thermos.gen.thermos.ttypes import ProcessState, RunnerState

from ..task_observer import NotFound, TaskObserver
from .app import observer
from .logs import resolve_log
from .safe_paths import PathRefused, list_dir, parse_int, relative_to, resolve

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Templates and assets (served at /assets by the app) live in observer/templates and observer/static.
bp = Blueprint("pages", __name__, template_folder=os.path.join(HERE, "templates"))

TYPES = ("active", "finished", "all")
DEFAULT_NUM = 20
MAX_NUM = 1000
LOG_TYPES = ("stdout", "stderr")
MAX_LISTING = 5000  # directory entries shown by the file browser


def register(app: Flask) -> None:
    """Called by `create_app`: add the pages to the observer's app."""
    app.register_blueprint(bp)


def _hostname() -> str:
    return current_app.config.get("HOSTNAME") or "localhost"


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(template, hostname=_hostname(), **context), status


def _error(status: int, message: str) -> tuple[str, int]:
    return _page("error.html", status, code=status, message=message)


def _abort(status: int, message: str) -> NoReturn:
    """Stop the request with the error page (for helpers deep inside a view)."""
    abort(make_response(_error(status, message)))


@bp.errorhandler(NotFound)
def _not_found(err: NotFound) -> tuple[str, int]:
    return _error(404, str(err))


@bp.errorhandler(PathRefused)
def _refused(err: PathRefused) -> tuple[str, int]:
    return _error(err.status, err.message)


# ---- filters -------------------------------------------------------------------------------

@bp.app_template_filter("fmt_utc")
def fmt_utc(ms: float | None) -> str:
    """Epoch milliseconds as UTC text (the page's script rewrites it in the reader's zone)."""
    if not ms:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000.0))


@bp.app_template_filter("fmt_bytes")
def fmt_bytes(value: float | None) -> str:
    if value is None or value < 0:
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return "%d %s" % (size, unit) if unit == "B" else "%.1f %s" % (size, unit)
        size /= 1024
    return "–"


@bp.app_template_filter("fmt_cpu")
def fmt_cpu(value: float | None) -> str:
    return "–" if value is None else "%.2f" % value


@bp.app_template_filter("fmt_duration")
def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "–"
    if seconds < 1:
        return "%d ms" % round(seconds * 1000)
    if seconds < 60:
        return "%.1f s" % seconds
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return "%dm %02ds" % (minutes, secs)
    hours, minutes = divmod(minutes, 60)
    return "%dh %02dm" % (hours, minutes) if hours < 48 else "%dd %dh" % divmod(hours, 24)


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for it on pages without an icon link (Aurora redirected it too)."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)


# ---- task list -----------------------------------------------------------------------------

@bp.get("/")
def index() -> tuple[str, int]:
    obs = observer()
    listings = [obs.main(kind, 0, DEFAULT_NUM) for kind in ("active", "finished")]
    return _page("index.html", listings=listings, counts=obs.task_id_count())


def _int_arg(text: str | None, default: int) -> int | None:
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        return None


@bp.get("/main")
@bp.get("/main/<type>")
@bp.get("/main/<type>/<offset>")
@bp.get("/main/<type>/<offset>/<num>")
def main(type: str = "all", offset: str | None = None, num: str | None = None) -> tuple[str, int]:
    """Aurora's list fragment (the index page loads it to refresh itself)."""
    start, count = _int_arg(offset, 0), _int_arg(num, DEFAULT_NUM)
    if type not in TYPES:
        return "Unknown task type %s: use active, finished or all" % type, 404
    if start is None or count is None or not 0 < count <= MAX_NUM:
        return "Bad offset/num %s/%s: use integers, 0 < num <= %d" % (offset, num, MAX_NUM), 404
    listing = observer().main(type, start, count)
    return render_template("main.html", listing=listing), 200


# ---- one task ------------------------------------------------------------------------------

def _at_ms() -> int | None:
    """The `?at=<epoch ms>` of a time-travel request, None for now; a bad value is a 400."""
    text = request.args.get("at")
    if text in (None, ""):
        return None
    try:
        at = int(text)
    except ValueError:
        _abort(400, "Bad at=%s: give a time as epoch milliseconds, e.g. at=%d" % (
            text, int(time.time() * 1000)))
    if at <= 0:
        _abort(400, "Bad at=%s: give a time as epoch milliseconds (a positive number)" % text)
    return at


def _runs_of(state: RunnerState, name: str) -> list[Any]:
    return list((state.processes or {}).get(name) or [])


def _process_rows(obs: TaskObserver, task_id: str, state: RunnerState, live: bool) -> list[dict[str, Any]]:
    """One row per process (config order): its latest run as of `state`, and live resources."""
    rows = []
    for name in obs.process_names(task_id):
        runs = _runs_of(state, name)
        last = runs[-1] if runs else None
        status = ProcessState._VALUES_TO_NAMES.get(last.state, "WAITING") if last else "WAITING"
        row: dict[str, Any] = {"name": name, "runs": len(runs), "run": len(runs) - 1 if runs else None,
                               "state": status, "pid": last.pid if last else None,
                               "start_ms": last.start_time * 1000 if last and last.start_time else None,
                               "stop_ms": last.stop_time * 1000 if last and last.stop_time else None,
                               "return_code": last.return_code if last else None, "sample": None}
        if row["start_ms"]:
            end = row["stop_ms"] or time.time() * 1000
            row["duration"] = max(0.0, (end - row["start_ms"]) / 1000.0)
        if live and last is not None and last.state == ProcessState.RUNNING:
            row["sample"] = obs.process_sample(task_id, name)
        rows.append(row)
    return rows


def _travel_range(timeline: dict[str, Any], active: bool) -> tuple[int, int]:
    """The slider's span in epoch ms: the first record until the last one (or now, if active)."""
    now = int(timeline.get("now", time.time()) * 1000)
    start = int((timeline.get("start") or time.time()) * 1000)
    end = now if active else int((timeline.get("end") or time.time()) * 1000)
    return start, max(end, start + 1000)


@bp.get("/task/<task_id>")
def task(task_id: str) -> tuple[str, int]:
    obs = observer()
    at = _at_ms()
    data = obs.task(task_id, at)
    if not data and at is not None and obs.task(task_id):
        launched = obs.timeline(task_id).get("start")
        return _error(404, "Task %s did not exist yet at %s: it was launched at %s." % (
            task_id, fmt_utc(at), fmt_utc(launched * 1000 if launched else None)))
    if not data:
        return _error(404, "Failed to find task %s.  Try again shortly." % task_id)
    active = data.get("type") == "active"
    state = obs.state_at(task_id, at) if at is not None else obs.state(task_id)
    timeline = obs.timeline(task_id)
    history = obs.resource_history(task_id)
    start, end = _travel_range(timeline, active)
    page_data = {"task_id": task_id, "at_ms": at, "active": active, "travel": [start, end],
                 "timeline": timeline, "history": history}
    return _page("task.html", task_id=task_id, task=data, at_ms=at, active=active,
                 processes=_process_rows(obs, task_id, state, live=at is None),
                 sample=data.get("resource_consumption") or {}, travel=(start, end),
                 page_data=page_data)


@bp.get("/rawtask/<task_id>")
def rawtask(task_id: str) -> tuple[str, int]:
    record = observer().raw_task(task_id)
    if record is None:
        return _error(404, "The task record of %s cannot be read (it may be being rewritten)." % task_id)
    text = json.dumps(record, indent=2, sort_keys=True)
    return _page("rawtask.html", task_id=task_id, text=text)


def _cmdline(obs: TaskObserver, task_id: str, process: str) -> str | None:
    for config in (obs.raw_task(task_id) or {}).get("processes") or ():
        if isinstance(config, dict) and config.get("name") == process:
            cmdline = config.get("cmdline")
            return cmdline if isinstance(cmdline, str) else None
    return None


@bp.get("/process/<task_id>/<process>")
def process(task_id: str, process: str) -> tuple[str, int]:
    obs = observer()
    runs = obs.process_runs(task_id, process)
    for run in runs:
        for key in ("start_time", "stop_time"):
            run[key.replace("time", "ms")] = run[key] * 1000 if run.get(key) else None
        if run.get("start_time"):
            run["duration"] = max(0.0, (run.get("stop_time") or time.time()) - run["start_time"])
    return _page("process.html", task_id=task_id, process=process, runs=runs,
                 cmdline=_cmdline(obs, task_id, process), latest=runs[0])


# ---- logs and files ------------------------------------------------------------------------

def _quote(part: str) -> str:
    return quote(part, safe="")


def _quote_path(relpath: str) -> str:
    return "/".join(_quote(part) for part in relpath.split("/"))


@bp.get("/logs/<task_id>/<process>/<run>/<logtype>")
def logs(task_id: str, process: str, run: str, logtype: str) -> tuple[str, int]:
    """A viewer that tails one run's stdout or stderr and follows it while it grows."""
    index, _ = resolve_log(observer(), task_id, process, parse_int(run, "run"), logtype)
    data_url = "/logdata/%s/%s/%d/%s" % (_quote(task_id), _quote(process), index, logtype)
    other = "stderr" if logtype == "stdout" else "stdout"
    return _page("follow.html", task_id=task_id, process=process, run=index, logtype=logtype,
                 other=other, title="%s · run %d · %s" % (process, index, logtype), path=None,
                 page_data={"data_url": data_url})


def _crumbs(task_id: str, relpath: str) -> list[tuple[str, str]]:
    crumbs = [("sandbox", url_for("pages.browse", task_id=task_id))]
    parts = [p for p in relpath.split("/") if p and p != "."]
    for index, part in enumerate(parts):
        crumbs.append((part, url_for("pages.browse", task_id=task_id, path="/".join(parts[:index + 1]))))
    return crumbs


@bp.get("/browse/<task_id>")
@bp.get("/browse/<task_id>/<anypath:path>")
def browse(task_id: str, path: str = "") -> tuple[str, int]:
    """An `ls -l` of a sandbox directory; subdirectories browse, files open or download."""
    base, target = resolve(observer().sandbox(task_id), path, what="sandbox")
    if not os.path.isdir(target):
        return _error(404, "No such directory: %s" % (path or "."))
    relpath = relative_to(base, target)
    entries = []
    for entry in list_dir(base, target)[:MAX_LISTING]:
        rel = entry.name if relpath == "." else relpath + "/" + entry.name
        kind = "dir" if entry.is_dir else "file" if entry.mode.startswith("-") else "other"
        entries.append({"name": entry.name, "rel": rel, "kind": kind, "size": entry.size,
                        "mode": entry.mode, "mtime_ms": int(entry.mtime * 1000), "link": entry.is_link,
                        "download": "/download/%s/%s" % (_quote(task_id), _quote_path(rel))})
    parent = None
    if relpath != ".":
        up = os.path.dirname(relpath)
        parent = url_for("pages.browse", task_id=task_id, path=up) if up else url_for(
            "pages.browse", task_id=task_id)
    return _page("browse.html", task_id=task_id, relpath=relpath, entries=entries, parent=parent,
                 crumbs=_crumbs(task_id, relpath), truncated=len(entries) >= MAX_LISTING)


@bp.get("/file/<task_id>/<anypath:path>")
def file(task_id: str, path: str) -> tuple[str, int]:
    """A viewer for one sandbox file that follows it while it grows."""
    base, target = resolve(observer().sandbox(task_id), path, what="sandbox")
    if not os.path.isfile(target):
        return _error(404, "No such file: %s" % path)
    relpath = relative_to(base, target)
    return _page("follow.html", task_id=task_id, process=None, title=relpath, path=relpath,
                 crumbs=_crumbs(task_id, os.path.dirname(relpath)),
                 download="/download/%s/%s" % (_quote(task_id), _quote_path(relpath)),
                 page_data={"data_url": "/filedata/%s/%s" % (_quote(task_id), _quote_path(relpath))})
