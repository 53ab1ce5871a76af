"""Health checking: a pure state machine fed by probes (HTTP, shell, TCP), run on a thread.

`HealthState` is Aurora's algorithm (spec §1.7) with no clock and no I/O: it is told each check's
result and answers STARTING / RUNNING / FAILED. Failures inside the grace period
(``ceil(initial_interval_secs / interval_secs)`` attempts) are forgiven; the task is RUNNING after
``min_consecutive_successes`` passes in a row and FAILED after more than
``max_consecutive_failures`` failures in a row, early when too few attempts remain to ever reach
RUNNING, or when all attempts were used without reaching RUNNING.

`HealthChecker` runs one check at once and then one every ``interval_secs`` on a daemon thread.
A file named ``.healthchecksnooze`` in the sandbox turns checks into passes without probing.

Probes return ``(passed, reason)``:
* `HttpProbe`: GET in-process (no fork per check), body/code judged as Aurora does.
* `ShellProbe`: ``/bin/bash -c`` as the role user, with the environment a task process gets,
  killed (with everything it started) after ``timeout_secs``.
* `TcpProbe` (not in Aurora): passes when a TCP connection to the port succeeds.
"""

from __future__ import annotations

import logging
import math
import os
import pwd
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from thermos.executor.checkers.base import (
    TASK_FAILED,
    TASK_RUNNING,
    TASK_STARTING,
    StatusChecker,
    StatusResult,
)
from thermos.executor.checkers.health_provider import (  # noqa: F401  (re-exported: Aurora's home of them)
    NO_HEALTH_CHECK,
    HealthCheckerProvider,
    NoopHealthChecker,
)
from thermos.executor.checkers.http_signaler import HttpSignaler
from thermos.executor.task_info import HealthCheckSpec

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, str | None]]

SNOOZE_FILE = '.healthchecksnooze'
HEALTHY = 'Task is healthy.'
NOT_ENOUGH_SUCCESSES = 'Not enough successful health checks in time.'

# The PATH a task process gets when the runner is root (see thermos.core.process); root's own
# PATH may list private tool directories.
STANDARD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'


@dataclass(frozen=True)
class HealthCheckPolicy:
    """The numbers of a HealthCheckConfig that drive the state machine."""

    interval_secs: float = 10.0
    initial_interval_secs: float | None = 15.0  # None: twice the interval
    max_consecutive_failures: int = 0
    min_consecutive_successes: int = 1

    @property
    def grace_secs(self) -> float:
        return 2 * self.interval_secs if self.initial_interval_secs is None else self.initial_interval_secs

    @property
    def forgiving_attempts(self) -> int:
        """Attempts whose failures are ignored (the grace period, in checks)."""
        if self.interval_secs <= 0:
            return 0
        return max(0, math.ceil(self.grace_secs / self.interval_secs))

    @property
    def max_attempts(self) -> int:
        """Checks allowed before the task must have become RUNNING."""
        return self.forgiving_attempts + self.max_consecutive_failures + self.min_consecutive_successes

    @classmethod
    def from_spec(cls, spec: HealthCheckSpec) -> HealthCheckPolicy:
        return cls(interval_secs=spec.interval_secs, initial_interval_secs=spec.initial_interval_secs,
                   max_consecutive_failures=spec.max_consecutive_failures,
                   min_consecutive_successes=spec.min_consecutive_successes)


class HealthState:
    """Aurora's health-check decisions, as a pure state machine (not thread-safe by itself)."""

    def __init__(self, policy: HealthCheckPolicy) -> None:
        self.policy = policy
        self.attempts = 0
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.running = False  # reached min_consecutive_successes once; stays True
        self.healthy = True  # False is permanent
        self.reason: str | None = None

    @property
    def out_of_attempts(self) -> bool:
        """True when the next cycle must give up instead of checking."""
        return self.healthy and not self.running and self.attempts > self.policy.max_attempts

    def give_up(self) -> None:
        """All attempts were used and the task never became RUNNING."""
        self._fail(NOT_ENOUGH_SUCCESSES)

    def record(self, passed: bool, reason: str | None = None) -> None:
        """Feed one check's result."""
        if not self.healthy:
            return
        policy = self.policy
        if self.attempts <= policy.max_attempts:
            self.attempts += 1
        if passed:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            if self.consecutive_successes >= policy.min_consecutive_successes:
                self.running = True
            return
        self.consecutive_successes = 0
        if self.attempts <= policy.forgiving_attempts:
            return
        if not self.running:
            remaining = policy.max_attempts - self.attempts
            if remaining > 1 and policy.min_consecutive_successes - self.consecutive_successes > remaining:
                self._fail(reason)
                return
        self.consecutive_failures += 1
        if self.consecutive_failures > policy.max_consecutive_failures:
            self._fail(reason)

    def _fail(self, reason: str | None) -> None:
        self.healthy = False
        self.reason = reason or 'unknown reason'

    @property
    def status(self) -> StatusResult:
        """STARTING until RUNNING; FAILED (``Failed health check! <reason>``) once unhealthy."""
        if not self.healthy:
            return StatusResult('Failed health check! %s' % self.reason, TASK_FAILED)
        if self.running:
            return StatusResult(HEALTHY, TASK_RUNNING)
        return StatusResult(None, TASK_STARTING)


# --------------------------------------------------------------------------------------------
# Probes


class HttpProbe:
    """GET ``http://<host>:<port><endpoint>`` in-process."""

    def __init__(self, port: int, endpoint: str = '/health', expected_response: str | None = 'ok',
                 expected_response_code: int | None = 0, timeout_secs: float = 1.0,
                 host: str = 'localhost') -> None:
        self._signaler = HttpSignaler(port, host=host, timeout_secs=timeout_secs)
        self._endpoint = endpoint
        self._expected_response = expected_response
        self._expected_response_code = expected_response_code

    def __call__(self) -> tuple[bool, str | None]:
        return self._signaler.check(self._endpoint, self._expected_response, self._expected_response_code)


class TcpProbe:
    """Passes when a TCP connection to ``host:port`` is accepted within the timeout."""

    def __init__(self, port: int, timeout_secs: float = 1.0, host: str = 'localhost') -> None:
        self._address = (host, port)
        self._timeout = timeout_secs

    def __call__(self) -> tuple[bool, str | None]:
        try:
            socket.create_connection(self._address, timeout=self._timeout).close()
        except OSError as e:
            return False, 'Failed to connect to %s:%d: %s' % (self._address + (e.strerror or e,))
        return True, None


class ShellProbe:
    """``/bin/bash -c <command>``; exit 0 passes. Runs in its own session so that a timeout kills
    everything the command started, not only bash."""

    def __init__(self, command: str, timeout_secs: float = 1.0, user: str | None = None,
                 env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        self.command = command
        self.timeout_secs = timeout_secs
        self.user = user
        self.env = dict(env) if env is not None else None
        self.cwd = cwd

    def _demotion(self) -> dict[str, object]:
        """setgid/setuid to the role user (only root can; others run the check as themselves)."""
        if self.user is None or os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam(self.user)
        return {'user': entry.pw_uid, 'group': entry.pw_gid, 'extra_groups': os.getgrouplist(
            entry.pw_name, entry.pw_gid)}

    def __call__(self) -> tuple[bool, str | None]:
        try:
            process = subprocess.Popen(
                ['/bin/bash', '-c', self.command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, start_new_session=True,
                **self._demotion())  # type: ignore[arg-type]
        except KeyError:
            return False, "Health check user '%s' does not exist." % self.user
        except OSError as e:
            return False, 'OSError: %s' % (e.strerror or e)
        except ValueError as e:
            log.warning('shell health check could not start: %s', e)
            return False, 'Invalid commmand.'  # (sic): Aurora's message
        try:
            output, _ = process.communicate(timeout=self.timeout_secs)
        except subprocess.TimeoutExpired:
            self._kill_session(process)
            return False, 'Health check timed out.'
        if process.returncode != 0:
            return False, "Command '%s' returned non-zero exit status %d with output '%s'" % (
                self.command, process.returncode, output.decode('utf-8', 'replace'))
        return True, None

    @staticmethod
    def _kill_session(process: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            process.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a descendant left the session and holds the pipe
            if process.stdout is not None:
                process.stdout.close()
            process.wait()


def task_environment(user: str | None, sandbox_root: str | None,
                     preserve_env: bool = False) -> dict[str, str]:
    """The environment a task process gets from the runner: HOME (the sandbox), USER, LOGNAME, PATH."""
    env = dict(os.environ) if preserve_env else {}
    name = user or pwd.getpwuid(os.geteuid()).pw_name
    inherit_path = preserve_env or os.geteuid() != 0
    env.update(USER=name, LOGNAME=name,
               PATH=os.environ.get('PATH', STANDARD_PATH) if inherit_path else STANDARD_PATH)
    if sandbox_root:
        env['HOME'] = sandbox_root
    return env


# --------------------------------------------------------------------------------------------
# Checkers


class HealthChecker(StatusChecker):
    """Runs `probe` on a daemon thread: at once, then every ``interval_secs`` until unhealthy.

    `clock` only times checks (``total_latency_secs``); `check_once` runs one cycle on the calling
    thread, for tests and for callers that schedule checks themselves.
    """

    def __init__(self, probe: Probe, policy: HealthCheckPolicy, sandbox_root: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probe = probe
        self._state = HealthState(policy)
        self._clock = clock
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        # Snoozing needs a sandbox that existed when the checker was built (Aurora's rule).
        self._snooze_file = (os.path.join(sandbox_root, SNOOZE_FILE)
                             if sandbox_root and os.path.isdir(sandbox_root) else None)
        self.snoozed = False
        self.checks = 0
        self.total_latency_secs = 0.0

    @property
    def name(self) -> str:
        return 'health_checker'

    @property
    def status(self) -> StatusResult:
        with self._lock:
            return self._state.status

    @property
    def state(self) -> HealthState:
        """The state machine (read-only use; for metrics and tests)."""
        return self._state

    def metrics(self) -> dict[str, float]:
        """Aurora's health_checker gauges."""
        with self._lock:
            return {'consecutive_failures': self._state.consecutive_failures, 'snoozed': int(self.snoozed),
                    'total_latency_secs': self.total_latency_secs, 'checks': self.checks}

    def check_once(self) -> StatusResult:
        """One cycle: give up, or check (unless snoozed) and record the result."""
        with self._lock:
            if not self._state.healthy:
                return self._state.status
            if self._state.out_of_attempts:
                self._state.give_up()
                return self._state.status
        passed, reason = self._check()
        with self._lock:
            self._state.record(passed, reason)
            if not self._state.healthy:
                log.warning('health check failed: %s', self._state.reason)
            return self._state.status

    def _check(self) -> tuple[bool, str | None]:
        if self._snooze_file is not None and os.path.isfile(self._snooze_file):
            if not self.snoozed:
                log.info('Health check snooze file found at %s; health checks disabled.', self._snooze_file)
            self.snoozed = True
            return True, None
        self.snoozed = False
        start = self._clock()
        try:
            passed, reason = self._probe()
        except Exception as e:
            log.exception('internal error in health check')
            passed, reason = False, 'Internal health check error: %s' % e
        with self._lock:
            self.checks += 1
            self.total_latency_secs += self._clock() - start
        if not passed:
            log.info('Health check failure: %s', reason)
        return passed, reason

    def _run(self) -> None:
        while not self._stopped.is_set():
            if self.check_once().status == TASK_FAILED:
                return
            self._stopped.wait(self._state.policy.interval_secs)

    @property
    def checking(self) -> bool:
        """True while the checking thread runs (it ends on stop() or once unhealthy)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name='health_checker', daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop checking; waits for an in-flight check at most its own timeout (bounded)."""
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
