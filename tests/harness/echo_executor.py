"""A minimal executor on the driver layer, to test the driver against the stand-in agent.

Each launched task is reported TASK_RUNNING at once and then obeys framework messages:
`finish <id>` -> TASK_FINISHED (`finish-later <id> <secs>`: after a delay), `raise` -> the callback
raises (must not be fatal), anything else is echoed back. killTask -> TASK_KILLED; shutdown ->
TASK_KILLED for every live task. After a terminal update of its last task the executor waits
(bounded) for the acknowledgements and exits 0.
Run as `python echo_executor.py` by the agent; logs one line per event to stderr.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from thermos.executor.driver import Executor, ExecutorDriver, MesosEnvironment, PyMesosDriver


class EchoExecutor(Executor):
    def __init__(self) -> None:
        self.live: set[str] = set()
        self.lock = threading.Lock()

    def launchTask(self, driver: ExecutorDriver, task: dict[str, Any]) -> None:  # noqa: N802
        tid = task["task_id"]["value"]
        with self.lock:
            self.live.add(tid)
        driver.send_status_update(tid, "TASK_RUNNING", "echo")

    def _end(self, driver: ExecutorDriver, tid: str, state: str, message: str) -> None:
        with self.lock:
            if tid not in self.live:
                return
            self.live.discard(tid)
            last = not self.live
        driver.send_status_update(tid, state, message)
        if last:
            threading.Thread(target=self._exit, args=(driver,), daemon=True).start()

    def _exit(self, driver: ExecutorDriver) -> None:
        acked = driver.wait_acknowledged(timeout=30.0)
        logging.info("all updates acknowledged: %s", acked)
        driver.stop()

    def killTask(self, driver: ExecutorDriver, task_id: str) -> None:  # noqa: N802
        self._end(driver, task_id, "TASK_KILLED", "killed")

    def shutdown(self, driver: ExecutorDriver) -> None:
        with self.lock:
            live = sorted(self.live)
        for tid in live:
            self._end(driver, tid, "TASK_KILLED", "shut down")
        if not live:
            driver.stop()

    def frameworkMessage(self, driver: ExecutorDriver, message: bytes) -> None:  # noqa: N802
        if message == b"raise":
            raise RuntimeError("callback failure requested by the test")
        if message.startswith(b"finish-later "):  # finish <id> after <secs>, whatever the agent does
            _, tid, secs = message.split()
            timer = threading.Timer(float(secs), self._end, args=(driver, tid.decode(), "TASK_FINISHED",
                                                                 "finished"))
            timer.daemon = True
            timer.start()
            return
        if message.startswith(b"finish "):
            self._end(driver, message.split()[1].decode(), "TASK_FINISHED", "finished")
            return
        driver.send_framework_message(b"echo:" + message)


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    driver = PyMesosDriver(EchoExecutor(), MesosEnvironment.from_env())
    driver.start()
    driver.join()
    logging.info("driver stopped: %s", driver.stop_reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
