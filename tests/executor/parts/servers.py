"""Real local HTTP servers on 127.0.0.1 that record what they receive and answer as told."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RecordingServer:
    """Serves on 127.0.0.1:<free port>; `responses[path] = (code, body)`; `requests` lists
    (method, path, body) in arrival order; `on_request(method, path)` runs on each request."""

    def __init__(self, responses=None):
        self.responses = dict(responses or {})
        self.requests = []
        self.received = threading.Condition()
        self.on_request = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer.received:
                    outer.requests.append((self.command, self.path, body))
                    outer.received.notify_all()
                if outer.on_request is not None:
                    outer.on_request(self.command, self.path)
                code, text = outer.responses.get(self.path, (404, "not found"))
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def free_port():
    """A port nothing listens on (bound then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
