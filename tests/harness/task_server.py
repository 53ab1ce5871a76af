"""A task process for executor tests: an HTTP server on 127.0.0.1 with Aurora's endpoints.

`python task_server.py PORT EVENTS_FILE [--health BODY] [--exit-on quitquitquit|abortabortabort|never]
[--ignore-term]`. GET /health answers BODY (default "ok"); POST /quitquitquit and /abortabortabort
are answered 200 and, like SIGTERM, appended to EVENTS_FILE as `<monotonic time> <event>` lines, so
a test can check what reached the task and in which order. The process exits after the endpoint
named by --exit-on, and on SIGTERM unless --ignore-term.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("events")
    p.add_argument("--health", default="ok")
    p.add_argument("--exit-on", default="never")
    p.add_argument("--ignore-term", action="store_true")
    args = p.parse_args()

    def record(event: str) -> None:
        with open(args.events, "a") as fp:
            fp.write("%f %s\n" % (time.monotonic(), event))
            fp.flush()
            os.fsync(fp.fileno())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *a: object) -> None:  # noqa: A002
            pass

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(args.health.encode() if self.path == "/health" else b"hello")

        def do_POST(self) -> None:  # noqa: N802
            name = self.path.strip("/")
            record(name)
            self._answer(b"ok")
            if name == args.exit_on:
                threading.Thread(target=lambda: os._exit(0), daemon=True).start()

    def on_term(signum: int, frame: object) -> None:
        record("SIGTERM")
        if not args.ignore_term:
            os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    server = HTTPServer(("127.0.0.1", args.port), Handler)
    record("listening")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
