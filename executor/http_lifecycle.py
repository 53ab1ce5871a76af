"""Graceful stop over HTTP: ask the task to quit before the runner signals it (spec §1.6).

For a task with ``lifecycle.http`` whose port resolved (see `task_info.HttpLifecycleSpec`), the
executor calls `graceful_shutdown` before the runner's kill: POST the graceful endpoint
(``/quitquitquit``), give the task ``graceful_shutdown_wait_secs`` to end, POST the shutdown
endpoint (``/abortabortabort``), give it ``shutdown_wait_secs``. An endpoint that answered with
any HTTP status counts as handled and is waited on; one that could not be reached (refused,
timed out) is skipped at once. Waiting ends early as soon as `terminated()` says the task ended,
and never runs past `deadline`, so the whole stop stays inside ``--stop_timeout_in_secs``.

Difference from Aurora: it polled the runner once a second; here the poll interval is 0.1 s by
default, so a task that exits on ``/quitquitquit`` is reported KILLED within a tenth of a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from thermos.executor.checkers.http_signaler import HttpSignaler, HttpSignalError
from thermos.executor.task_info import HttpLifecycleSpec

log = logging.getLogger(__name__)

POLL_INTERVAL_SECS = 0.1


def escalation(spec: HttpLifecycleSpec) -> list[tuple[str, float]]:
    """The (endpoint, wait) steps in order."""
    return [(spec.graceful_shutdown_endpoint, spec.graceful_shutdown_wait_secs),
            (spec.shutdown_endpoint, spec.shutdown_wait_secs)]


def graceful_shutdown(spec: HttpLifecycleSpec, terminated: Callable[[], bool], *,
                      deadline: float | None = None, host: str = 'localhost',
                      request_timeout_secs: float | None = None,
                      poll_interval_secs: float = POLL_INTERVAL_SECS,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> bool:
    """POST each endpoint and wait; True if the task ended before the runner has to kill it.

    `terminated` is polled (it must be cheap: e.g. the runner's cached status). `deadline` is a
    `clock()` value after which nothing more is sent or waited for. `request_timeout_secs`
    defaults to ``$AURORA_HTTP_SIGNALER_TIMEOUT_SECS`` or 1 s.
    """
    signaler = HttpSignaler(spec.port, host=host, timeout_secs=request_timeout_secs)
    for endpoint, wait_secs in escalation(spec):
        if terminated():
            return True
        if deadline is not None and clock() >= deadline:
            log.info('Stop deadline reached before %s', signaler.url(endpoint))
            return False
        try:
            response = signaler.request(endpoint, method='POST')
        except HttpSignalError as e:
            log.info('%s; continuing', e)
            continue
        log.info('POST %s -> %d; waiting up to %.1f s for the task to end',
                 signaler.url(endpoint), response.code, wait_secs)
        until = clock() + wait_secs
        if deadline is not None:
            until = min(until, deadline)
        while True:
            if terminated():
                log.info('Task ended after %s', endpoint)
                return True
            remaining = until - clock()
            if remaining <= 0:
                break
            sleep(min(poll_interval_secs, remaining))
    return terminated()
