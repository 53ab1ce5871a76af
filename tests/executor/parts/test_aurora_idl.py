"""The generated Aurora subset round-trips an AssignedTask and keeps Aurora's numbering."""

import pytest
from thrift.protocol import TBinaryProtocol
from thrift.TSerialization import deserialize, serialize

from thermos.gen.aurora.constants import AURORA_EXECUTOR_NAME, LIVE_STATES, TERMINAL_STATES
from thermos.gen.aurora.ttypes import (
    AdjustRetainedTasks,
    AssignedTask,
    Constraint,
    Container,
    DockerContainer,
    ExecutorConfig,
    JobKey,
    LimitConstraint,
    Metadata,
    Resource,
    ScheduleStatus,
    TaskConfig,
    TaskConstraint,
    ValueConstraint,
)

BINARY = TBinaryProtocol.TBinaryProtocolFactory()
PROTOCOLS = [BINARY, TBinaryProtocol.TBinaryProtocolAcceleratedFactory()]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["pure", "accelerated"])
def test_assigned_task_round_trips_in_binary_protocol(protocol):
    """Sets of structs (resources, constraints, metadata) decode: their elements are hashable."""
    task = AssignedTask(
        taskId="t-1", slaveId="agent-1", slaveHost="host.example", instanceId=3,
        assignedPorts={"http": 31000},
        task=TaskConfig(job=JobKey(role="www", environment="prod", name="hello"),
                        resources={Resource(numCpus=1.0), Resource(ramMb=64), Resource(namedPort="http")},
                        constraints={Constraint(name="rack", constraint=TaskConstraint(
                            value=ValueConstraint(negated=False, values=frozenset({"a", "b"})))),
                            Constraint(name="host",
                                       constraint=TaskConstraint(limit=LimitConstraint(limit=1)))},
                        metadata={Metadata(key="k", value="v")},
                        executorConfig=ExecutorConfig(name=AURORA_EXECUTOR_NAME, data="{}")))
    back = deserialize(AssignedTask(), serialize(task, protocol), protocol)
    assert back == task
    assert back.task.container == Container(mesos=back.task.container.mesos)  # Aurora's default


def test_field_ids_are_auroras():
    ids = {spec[2]: spec[0] for spec in TaskConfig.thrift_spec if spec}
    assert (ids["job"], ids["executorConfig"], ids["container"], ids["resources"]) == (28, 25, 29, 32)
    assert [s[0] for s in AssignedTask.thrift_spec if s] == [1, 2, 3, 4, 5, 6]
    assert [s[0] for s in AdjustRetainedTasks.thrift_spec if s] == [2]
    assert [s[2] for s in Container.thrift_spec if s] == ["mesos", "docker"]


def test_a_docker_task_decodes():
    task = TaskConfig(container=Container(docker=DockerContainer(image="busybox")))
    assert deserialize(TaskConfig(), serialize(task, BINARY), BINARY).container.docker.image == "busybox"


def test_schedule_status_values():
    assert ScheduleStatus._NAMES_TO_VALUES["ASSIGNED"] == 9
    assert ScheduleStatus._NAMES_TO_VALUES["PARTITIONED"] == 18
    assert TERMINAL_STATES == {ScheduleStatus.FAILED, ScheduleStatus.FINISHED, ScheduleStatus.KILLED,
                               ScheduleStatus.LOST}
    assert ScheduleStatus.RUNNING in LIVE_STATES


def test_gc_message_round_trips():
    message = AdjustRetainedTasks(retainedTasks={"a": ScheduleStatus.RUNNING, "b": ScheduleStatus.ASSIGNED})
    assert deserialize(AdjustRetainedTasks(), serialize(message, BINARY), BINARY) == message
