"""The observer's Flask application: one blueprint per group of routes, served by waitress.

`create_app(observer)` is all a server (or a test) needs. Routes get the TaskObserver through
`observer()`; they never open a checkpoint themselves. Errors that users can cause (an unknown
task or process, a refused path, a bad number) become one-line 4xx answers: JSON `{"error": ...}`
for the data routes, plain text elsewhere.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
from typing import Any, cast

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.routing import PathConverter

from ..task_observer import NotFound, TaskObserver
from .safe_paths import PathRefused

log = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DATA_PREFIXES = ("/j/", "/logdata/", "/filedata/")


class AnyPathConverter(PathConverter):
    """`<anypath:p>`: like `<path:p>` but also matches a leading '/' or nothing at all, so that
    absolute and empty paths reach safe_paths and get its clear answer instead of a bare 404.
    Use it for every route that takes a path inside a sandbox."""

    regex = ".*"
    part_isolating = False  # werkzeug would infer True from a regex without '/'


def observer() -> TaskObserver:
    """The TaskObserver of the app serving the current request."""
    return cast(TaskObserver, current_app.extensions["thermos_observer"])


def error_response(status: int, message: str) -> Response:
    """A one-line error: JSON for data routes, plain text for everything else."""
    if request.path.startswith(_DATA_PREFIXES):
        response = jsonify(error=message)
    else:
        response = Response(message + "\n", mimetype="text/plain")
    response.status_code = status
    return response


def _register_pages(app: Flask) -> None:
    """The HTML pages live in a separate module (`pages.py`), registered when it is present."""
    try:
        pages = importlib.import_module(__package__ + ".pages")
    except ModuleNotFoundError as err:
        if err.name != __package__ + ".pages":
            raise
        log.info("No HTML pages module; serving the JSON, log, file and metrics routes only")
        return
    register = getattr(pages, "register", None)
    if callable(register):
        register(app)
    elif getattr(pages, "bp", None) is not None:
        app.register_blueprint(pages.bp)


def create_app(task_observer: TaskObserver, hostname: str | None = None,
               argv: list[str] | None = None) -> Flask:
    """The WSGI app over `task_observer` (which the caller starts and stops)."""
    from . import files, json_api, logs, metrics

    app = Flask("thermos.observer", root_path=HERE, template_folder=os.path.join(HERE, "templates"),
                static_folder=os.path.join(HERE, "static"), static_url_path="/assets")
    # '//etc/passwd' must reach the path check as an absolute path, not be redirected away.
    app.url_map.merge_slashes = False
    app.url_map.converters["anypath"] = AnyPathConverter
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["HOSTNAME"] = hostname or socket.gethostname()
    app.config["ARGV"] = list(argv) if argv is not None else []
    app.config["STARTED_AT"] = time.time()
    app.extensions["thermos_observer"] = task_observer

    for blueprint in (json_api.bp, logs.bp, files.bp):
        app.register_blueprint(blueprint)
    metrics.register(app, task_observer)
    _register_pages(app)

    @app.errorhandler(NotFound)
    def _not_found(err: NotFound) -> Response:
        return error_response(404, str(err))

    @app.errorhandler(PathRefused)
    def _refused(err: PathRefused) -> Response:
        return error_response(err.status, err.message)

    @app.errorhandler(404)
    def _no_route(err: Any) -> Response:
        return error_response(404, "No such page: %s" % request.path)

    @app.errorhandler(405)
    def _method(err: Any) -> Response:
        return error_response(405, "Method %s not allowed on %s (the observer is read-only)" % (
            request.method, request.path))

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return app
