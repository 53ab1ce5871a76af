"""Sandbox files as data: `/filedata/<id>/<path>` chunks, `/download/<id>/<path>`, `/j/browse/...`.

All paths go through safe_paths (see there for the rules). Downloads are streamed in 64 KB
chunks from a descriptor opened on the checked path, so a large file never sits in memory.
"""

from __future__ import annotations

import os

from flask import Blueprint, Response, jsonify, request

from .app import observer
from .safe_paths import list_dir, open_regular, parse_int, read_chunk, relative_to, resolve, stream

bp = Blueprint("files", __name__)


def resolve_sandbox(task_id: str, path: str | None) -> tuple[str, str]:
    """`(real sandbox, real path)` of a path in a task's sandbox; NotFound/PathRefused otherwise."""
    return resolve(observer().sandbox(task_id), path, what="sandbox")


@bp.route("/filedata/<task_id>/<anypath:path>")
def filedata(task_id: str, path: str) -> Response:
    """A chunk of a sandbox file, like /logdata; `{}` if the path is not a regular file."""
    offset = parse_int(request.args.get("offset"), "offset")
    length = parse_int(request.args.get("length"), "length")
    _, real = resolve_sandbox(task_id, path)
    if not os.path.isfile(real):
        return jsonify({})
    return jsonify(read_chunk(real, offset, length))


@bp.route("/download/<task_id>/<anypath:path>")
def download(task_id: str, path: str) -> Response:
    """The file as an `application/octet-stream` attachment, streamed in bounded chunks."""
    _, real = resolve_sandbox(task_id, path)
    fd, st = open_regular(real)
    response = Response(stream(fd), mimetype="application/octet-stream", direct_passthrough=True)
    response.headers["Content-Length"] = str(st.st_size)
    response.headers["Content-Disposition"] = "attachment; filename=\"%s\"" % (
        os.path.basename(real).replace("\"", "_").replace("\\", "_"))
    return response


@bp.route("/j/browse/<task_id>")
@bp.route("/j/browse/<task_id>/<anypath:path>")
def browse(task_id: str, path: str | None = None) -> Response:
    """`{task_id, path (relative, '.' for the top), entries: [{name, is_dir, is_link, size,
    mtime, mode}]}` of a sandbox directory."""
    base, real = resolve_sandbox(task_id, path)
    if not os.path.isdir(real):
        return jsonify({"task_id": task_id, "path": relative_to(base, real), "entries": None})
    entries = [{"name": e.name, "is_dir": e.is_dir, "is_link": e.is_link, "size": e.size,
                "mtime": e.mtime, "mode": e.mode} for e in list_dir(base, real)]
    return jsonify({"task_id": task_id, "path": relative_to(base, real), "entries": entries})
