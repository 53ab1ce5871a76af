"""A stand-in for the Mesos agent's `/containers` endpoint: real HTTP on 127.0.0.1.

Answers GET /containers with queued JSON bodies (the last one repeats), any other path with 404,
records every request, and can hold answers until released (for timeouts and concurrency).
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def container(executor_id: str, disk_used_bytes: Any) -> dict[str, Any]:
    """One entry shaped like the agent's: ids, and statistics with disk_used_bytes."""
    return {"container_id": "c-" + executor_id, "executor_id": executor_id, "framework_id": "fw",
            "source": executor_id, "statistics": {"disk_used_bytes": disk_used_bytes, "timestamp": 1.0}}


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return "http://127.0.0.1:%d/containers" % port


class ContainersAgent:
    def __init__(self) -> None:
        self._answers: list[tuple[int, bytes]] = [(200, b"[]")]
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._held = threading.Event()
        self._release = threading.Event()
        self._release.set()
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with agent._lock:
                    agent.requests.append((self.command, self.path))
                    status, body = (agent._answers[0] if len(agent._answers) == 1
                                    else agent._answers.pop(0))
                agent._held.set()
                agent._release.wait(30)
                if self.path.split("?")[0] != "/containers":
                    status, body = 404, b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                        name="containers-agent")
        self._thread.start()

    def url(self, path: str = "/containers") -> str:
        return "http://127.0.0.1:%d%s" % (self._server.server_address[1], path)

    def answer(self, *bodies: Any, status: int = 200) -> None:
        """Queue answers (JSON-encoded unless bytes); the last one repeats."""
        with self._lock:
            self._answers = [(status, body if isinstance(body, bytes) else json.dumps(body).encode())
                             for body in bodies]

    def hold(self) -> None:
        """Keep every answer back until `release()`."""
        self._held.clear()
        self._release.clear()

    def wait_held(self, timeout: float = 10.0) -> bool:
        """Whether a request arrived while holding."""
        return self._held.wait(timeout)

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
