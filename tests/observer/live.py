"""Real tasks for the observer's tests, and thermos_observer itself as a real service.

`build(base)` runs, with real thermos_runner processes, one task of each kind: hello_ok (SUCCESS,
writes a file in its sandbox), hello_fail (FAILED, rc 3), hello_killed (KILLED by SIGTERM to its
runner) and two live ones: hello_active (RUNNING, sleeps) and ticker (RUNNING, its process `main`
prints a line every 0.2 s). `ObserverService` runs `python -m thermos.observer.main` on it over plain HTTP.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

from tests.cli.live import Root, make_task
from thermos.testing.wait import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LiveRoot(Root):
    def kill(self, task_id, task):
        """Start a task, wait for it to run, then SIGTERM its runner: the task ends KILLED."""
        run = self.start(task_id, task)
        runner = self.runners.pop()
        os.kill(runner.pid, signal.SIGTERM)
        assert runner.wait(timeout=60) == 0
        return run

    def sandbox(self, task_id):
        return self.harness[task_id].sandbox


def build(base) -> LiveRoot:
    root = LiveRoot(base)
    try:
        root.run("hello_ok", make_task("hello_ok", "echo hello world; echo line2; echo data > out.txt",
                                       process="hello"))
        root.run("hello_fail", make_task("hello_fail", "echo oops >&2; exit 3", max_failures=1))
        root.kill("hello_killed", make_task("hello_killed", "echo doomed; exec sleep 300"))
        root.active_run = root.start("hello_active",
                                     make_task("hello_active", "echo started; exec sleep 300"))
        root.ticker_run = root.start("ticker", make_task(
            "ticker", "for i in $(seq 1 3000); do echo tick $i; sleep 0.2; done"))
    except BaseException:
        root.close()
        raise
    return root


class ObserverService:
    """thermos_observer as a subprocess listening on 127.0.0.1 (an ephemeral port)."""

    def __init__(self, root: str, state_dir: str, *extra: str) -> None:
        self.args = [sys.executable, "-m", "thermos.observer.main", "--root", root, "--mesos-root", "",
                     "--ip", "127.0.0.1", "--port", "0", "--state_dir", state_dir,
                     "--polling_interval_secs", "0.2", "--task_process_collection_interval_secs", "0.5",
                     "--task_disk_collection_interval_secs", "1", *extra]
        self.log_path = os.path.join(state_dir + ".log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)
        self.port = wait_until(self._port, timeout=60)
        self.url = "http://127.0.0.1:%d" % self.port

    def log(self) -> str:
        with open(self.log_path) as fp:
            return fp.read()

    def _port(self) -> int | None:
        if self.proc.poll() is not None:
            raise AssertionError("thermos_observer exited %s:\n%s" % (self.proc.returncode, self.log()))
        found = re.search(r"serving http://127\.0\.0\.1:(\d+)/", self.log())
        return int(found.group(1)) if found else None

    def get(self, path: str) -> tuple[int, str, bytes]:
        """`(status, content type, body)` of a GET (errors included)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type", ""), err.read()

    def json(self, path: str, status: int = 200):
        code, _, body = self.get(path)
        assert code == status, (path, code, body)
        return json.loads(body)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()
