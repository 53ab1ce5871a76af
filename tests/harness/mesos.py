"""pytest fixtures around the stand-in Mesos agent (thermos.testing.mesos_agent).

Import them into a conftest.py: `from tests.harness.mesos import mesos_agent, agent_factory  # noqa: F401`.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from thermos.testing.mesos_agent import MesosAgent

ECHO_EXECUTOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo_executor.py")


def python_command(*args: str) -> str:
    """A shell command line running this interpreter (the agent runs commands with sh -c)."""
    return " ".join(shlex.quote(a) for a in (sys.executable, *args))


def dump_executors(agent: MesosAgent) -> str:
    """Every executor's stderr, for assertion messages."""
    return "\n".join("--- %s (rc=%s) stderr:\n%s" % (run.executor_id, run.exit_code, run.log_text()[-6000:])
                     for run in agent.executors.values())


@pytest.fixture
def agent_factory(tmp_path) -> Iterator[Callable[..., MesosAgent]]:
    """Build and start agents (keyword arguments as MesosAgent's); all stopped at teardown."""
    agents: list[MesosAgent] = []

    def make(**kwargs: Any) -> MesosAgent:
        agent = MesosAgent(str(tmp_path / ("mesos-%d" % len(agents))), **kwargs)
        agent.start()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.stop()
    reap_leftovers(str(tmp_path))


def reap_leftovers(root: str) -> None:
    """Kill runners (own sessions, so the agent's stop misses them) and their tasks under `root`.

    A failing end-to-end test must not leave a task running on the host for the next ones.
    """
    import signal

    from thermos.core import containment

    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as fp:
                argv = [a.decode(errors="replace") for a in fp.read().split(b"\0") if a]
        except OSError:
            continue
        if not any(root in arg for arg in argv):
            continue
        flags = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
        if "thermos.runner" in argv and "checkpoint_root" in flags and "task_id" in flags:
            containment.kill_task(flags["checkpoint_root"], flags["task_id"])
        try:
            os.kill(int(entry), signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def mesos_agent(agent_factory) -> MesosAgent:
    """A running agent with checkpointing, a 2 s re-registration window and a 15 min recovery timeout."""
    return agent_factory()
