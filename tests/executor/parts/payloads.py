"""Builders for the AssignedTask payloads an Aurora scheduler sends (shared by executor tests)."""

import json

from thermos.executor.task_info import encode_assigned_task

from thermos.gen.aurora.ttypes import AssignedTask, ExecutorConfig, Identity, JobKey, Resource, TaskConfig


def thermos_task(*processes, name="hello", resources=None):
    """A Thermos task dict; processes are (name, cmdline) pairs."""
    task = {"name": name, "processes": [{"name": n, "cmdline": c} for n, c in processes]}
    task["resources"] = resources or {"cpu": 0.1, "ram": 16 * 1024 * 1024, "disk": 8 * 1024 * 1024}
    return task


def mesos_job(task=None, role="www-data", environment="prod", **extra):
    """The MesosJob JSON dict Aurora's client puts in executorConfig.data."""
    job = {"name": "hello", "role": role, "cluster": "devcluster", "environment": environment,
           "task": task or thermos_task(("hello", "echo hello"))}
    job.update(extra)
    return job


def assigned_task(executor_data, task_id="www-data-prod-hello-0-abc", instance=0, ports=None,
                  host="agent.example", role="www-data", environment="prod", job_name="hello",
                  container=None):
    """An AssignedTask whose executorConfig.data is `executor_data` (a dict is JSON-encoded)."""
    if not isinstance(executor_data, str):
        executor_data = json.dumps(executor_data)
    config = TaskConfig(
        job=JobKey(role=role, environment=environment, name=job_name), owner=Identity(user=role),
        isService=True, priority=0, maxTaskFailures=1,
        resources=frozenset({Resource(numCpus=0.1), Resource(ramMb=16), Resource(diskMb=8)}),
        constraints=frozenset(), executorConfig=ExecutorConfig(name="AuroraExecutor", data=executor_data))
    if container is not None:
        config.container = container
    return AssignedTask(taskId=task_id, slaveId="agent-1", slaveHost=host, task=config,
                        assignedPorts=dict(ports or {}), instanceId=instance)


def task_info_data(executor_data, **kw):
    """TaskInfo.data bytes for `assigned_task(executor_data, **kw)`."""
    return encode_assigned_task(assigned_task(executor_data, **kw))
