"""Which health checker a task gets, without loading the checking code for tasks that have none.

Most tasks define no health check and are RUNNING as soon as they start (`NoopHealthChecker`); the
probes and the checker thread (`checkers.health`) are imported only for a task with an HTTP, shell
or TCP check. `checkers.health` re-exports these names, where Aurora-style code looks for them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from thermos.executor.checkers.base import TASK_RUNNING, StatusChecker, StatusResult

if TYPE_CHECKING:
    from thermos.executor.task_info import ExecutorTask

NO_HEALTH_CHECK = 'No health-check defined, task is assumed healthy.'


class NoopHealthChecker(StatusChecker):
    """A task without a health check is RUNNING as soon as it starts."""

    @property
    def name(self) -> str:
        return 'health_checker'

    @property
    def status(self) -> StatusResult:
        return StatusResult(NO_HEALTH_CHECK, TASK_RUNNING)


class HealthCheckerProvider:
    """Builds the task's health checker from its decoded `HealthCheckSpec`.

    ``nosetuid_health_checks`` (``--nosetuid-health-checks``) runs shell checks as the executor's
    user; otherwise as the task's role (Docker tasks: the executor's user). ``host`` is where the
    task's ports are reached.
    """

    def __init__(self, nosetuid_health_checks: bool = False, preserve_env: bool = False,
                 host: str = 'localhost') -> None:
        self.nosetuid_health_checks = nosetuid_health_checks
        self.preserve_env = preserve_env
        self.host = host

    def from_task(self, task: ExecutorTask, sandbox_root: str | None) -> StatusChecker:
        spec = task.health_check
        if spec.kind == 'none':
            return NoopHealthChecker()
        from thermos.executor.checkers import health

        probe: health.Probe
        if spec.kind == 'shell':
            user = None if self.nosetuid_health_checks or task.docker_image else task.role
            cwd = sandbox_root if sandbox_root and os.path.isdir(sandbox_root) else None
            probe = health.ShellProbe(spec.shell_command or '', timeout_secs=spec.timeout_secs, user=user,
                                      env=health.task_environment(user, sandbox_root, self.preserve_env),
                                      cwd=cwd)
        elif spec.kind == 'tcp':
            probe = health.TcpProbe(spec.port or 0, timeout_secs=spec.timeout_secs, host=self.host)
        else:
            probe = health.HttpProbe(spec.port or 0, spec.endpoint, spec.expected_response,
                                     spec.expected_response_code, timeout_secs=spec.timeout_secs,
                                     host=self.host)
        policy = health.HealthCheckPolicy.from_spec(spec)
        return health.HealthChecker(probe, policy, sandbox_root=sandbox_root)
