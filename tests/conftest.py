"""Suite-wide hygiene: cgroups that this test session's tasks left behind are removed at the end.

Tests SIGKILL runners on purpose and never finish some tasks, so their (by then empty) cgroups
would stay on the host. Only cgroups created during the session are touched, and only empty ones
can be removed at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from thermos.core import containment


def _task_cgroups() -> set[str]:
    """Task cgroups beside this process's own (where the runners the tests start put them)."""
    probe = containment.TaskCgroup.for_task("/", "probe")
    if probe is None:
        return set()
    parent = os.path.dirname(probe.path)
    try:
        return {os.path.join(parent, name) for name in os.listdir(parent)
                if name.startswith(containment.PREFIX) and os.path.isdir(os.path.join(parent, name))}
    except OSError:
        return set()


@pytest.fixture(scope="session", autouse=True)
def remove_session_cgroups() -> Iterator[None]:
    before = _task_cgroups()
    yield
    for path in _task_cgroups() - before:
        try:
            os.rmdir(path)
        except OSError:
            pass  # still has members: a test's task is alive, which that test reports itself
