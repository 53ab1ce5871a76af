"""The runner's fast validity check and the loader's validators agree: an invalid task gets the
loader's one-line message, a valid one starts without the per-process walks."""

from __future__ import annotations

import pytest

from thermos.config.loader import ConfigError, ThermosTaskValidator
from thermos.config.schema import Constraint, Process, Resources, Task
from thermos.core.runner import TaskRunner

RES = Resources(cpu=0.1, ram=1 << 20, disk=1 << 20)


def p(name: str, **kw) -> Process:
    return Process(name=name, cmdline=kw.pop("cmdline", "true"), **kw)


INVALID = [
    Task(name="t", processes=[p("a"), p("a")], resources=RES),
    Task(name="t", processes=[p("a/b")], resources=RES),
    Task(name="t", processes=[p("a"), p("f", final=True)], constraints=[Constraint(order=["a", "f"])],
         resources=RES),
    Task(name="t", processes=[p("a", cmdline="serve {{thermos.ports[http]}}")], resources=RES),
    Task(name="t", processes=[p("a", cmdline="echo {{unbound}}")], resources=RES),
    Task(name="t", processes=[], resources=RES),
]


@pytest.mark.parametrize("task", INVALID)
def test_an_invalid_task_gets_the_loaders_message(tmp_path, task):
    with pytest.raises(ConfigError) as expected:
        ThermosTaskValidator.assert_valid_task(task)
        ThermosTaskValidator.assert_valid_ports(task, {})
    with pytest.raises(TaskRunner.InvalidTask) as got:
        TaskRunner(task, str(tmp_path), str(tmp_path / "sb"), task_id="t")
    assert str(got.value) == str(expected.value)


def test_a_valid_task_binds_ports_and_keeps_its_plans(tmp_path):
    task = Task(name="t", processes=[p("a", cmdline="serve {{thermos.ports[http]}}"), p("f", final=True)],
                resources=RES)
    runner = TaskRunner(task, str(tmp_path), str(tmp_path / "sb"), task_id="t", portmap={"http": 8080})
    assert runner._processes["a"].cmdline().get() == "serve 8080"
    assert runner._regular_plan.runnable_at(0) == {"a"}
    assert runner._finalizing_plan.runnable_at(0) == {"f"}
