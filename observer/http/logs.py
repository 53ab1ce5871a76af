"""Log data of a process run (`/logdata/...`): chunks by offset/length, for live following.

The HTML viewer (`/logs/...`, in pages.py) polls this. `resolve_log` is shared with it: the path
comes from the runner header's `log_dir` and is checked like any sandbox path.
"""

from __future__ import annotations

import os

from flask import Blueprint, Response, jsonify, request

from ..task_observer import NotFound, TaskObserver
from .app import observer
from .safe_paths import check_name, parse_int, read_chunk, resolve

bp = Blueprint("logs", __name__)

LOG_TYPES = ("stdout", "stderr")


def resolve_log(task_observer: TaskObserver, task_id: str, process: str, run: int | None,
                log_type: str) -> tuple[int, str]:
    """`(run index, real path)` of a run's stdout/stderr; NotFound or PathRefused otherwise.

    The file itself need not exist yet (a run that has not written anything).
    """
    if log_type not in LOG_TYPES:
        raise NotFound("Unknown log type %r (use stdout or stderr)" % log_type)
    check_name(process, "process name")
    index = task_observer.log_run(task_id, process, run)
    _, path = resolve(task_observer.log_dir(task_id),
                      os.path.join(process, str(index), log_type), what="log directory")
    return index, path


@bp.route("/logdata/<task_id>/<process>/<run>/<log_type>")
def logdata(task_id: str, process: str, run: str, log_type: str) -> Response:
    """`{offset, length, data}` (data XML-escaped) or `{offset, length: 0}`; see read_chunk.

    `?offset=-1` (the default) starts at the end of the file, `length=-1` reads to the end (at most
    1 MB per answer). A run whose file does not exist yet answers `{}` (Aurora), so a follower
    keeps polling.
    """
    offset = parse_int(request.args.get("offset"), "offset")
    length = parse_int(request.args.get("length"), "length")
    _, path = resolve_log(observer(), task_id, process, parse_int(run, "run"), log_type)
    if not os.path.isfile(path):
        return jsonify({})
    return jsonify(read_chunk(path, offset, length))
