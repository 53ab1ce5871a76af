"""StatusManager: poll one status checker and act once on RUNNING and once on a terminal result.

Aurora polled every 500 ms; the default here is 50 ms, so that TASK_RUNNING follows the runner's
start within a few tens of milliseconds (checkers' `status` reads are cheap by contract).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from thermos.executor.checkers.base import TASK_FAILED, TASK_RUNNING, StatusChecker, StatusResult

log = logging.getLogger(__name__)


class StatusManager:
    """A daemon thread calling `on_running(result)` the first time the checker says RUNNING and
    `on_terminal(result)` the first time it says anything terminal, then exiting."""

    def __init__(self, checker: StatusChecker, on_running: Callable[[StatusResult], None],
                 on_terminal: Callable[[StatusResult], None], interval: float = 0.05) -> None:
        self._checker = checker
        self._on_running = on_running
        self._on_terminal = on_terminal
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-manager", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        running = False
        while not self._stop.is_set():
            try:
                result = self._checker.status
            except Exception as e:  # a checker bug ends the task with a message, not a hung executor
                log.exception("Status checker failed")
                result = StatusResult("Internal error: %s" % e, TASK_FAILED)
            if result is not None:
                if result.terminal:
                    log.info("Task is ending: %s (%s)", result.status, result.reason)
                    self._on_terminal(result)
                    return
                if result.status == TASK_RUNNING and not running:
                    running = True
                    self._on_running(result)
            self._stop.wait(self._interval)
