"""Decode what an Aurora scheduler puts in ``TaskInfo.data`` into what the executor needs.

Two stages, because the executor sends TASK_STARTING between them (spec §1.2):

1. `decode_assigned_task(data)` -> the Thrift `AssignedTask` (TBinaryProtocol, not deflated).
   Failure: ``Could not deserialize task.`` and no TASK_STARTING.
2. `executor_task_from_assigned_task(assigned)` -> an `ExecutorTask`: the Thermos task bound
   with ``{{mesos.instance}}``, ``{{mesos.hostname}}`` and ``{{thermos.ports[...]}}`` and validated,
   plus the health-check, lifecycle, announce, resource and container settings as plain values.
   Failure: ``Could not deserialize Thermos task from AssignedTask: <why>``.

Every failure is a `TaskInfoError` whose ``str()`` is the one-line TASK_FAILED message; nothing
else escapes (pystachio and Thrift errors are translated), so a bad payload never becomes a
traceback in the task's status.

Deliberate differences from Aurora (which keeps the same messages):
* bytes that decode to no task id or no TaskConfig, or leave bytes unread, are undecodable
  (Aurora decoded ``b'\\0'`` to an empty task and crashed later);
* a task that needs a port the scheduler did not assign fails here, naming the port (Aurora's
  runner exited with "internal error" and the task was LOST);
* shell health checks are interpolated with the resolved ports (announce aliases included),
  ``{{mesos.hostname}}`` and ``{{thermos.user}}`` as well (Aurora bound only the assigned ports,
  task id and instance, leaving the rest as literal text in the command).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from thrift.protocol.TBinaryProtocol import TBinaryProtocol, TBinaryProtocolFactory
from thrift.transport.TTransport import TMemoryBuffer
from thrift.TSerialization import serialize

from thermos.config.aurora_schema import Announcer, DefaultLifecycleConfig, MesosContext, MesosTaskInstance

# _filter_to_schema: the loader's forward-compatible key filter (pystachio's own skips lists).
from thermos.config.loader import (
    ConfigError,
    ThermosTaskValidator,
    ThermosTaskWrapper,
    _filter_to_schema,
    describe_config_error,
)
from thermos.config.schema import Task, ThermosContext
from thermos.gen.aurora.ttypes import AssignedTask, Container, Image, JobKey

log = logging.getLogger(__name__)

UNDECODABLE_TASK = 'Could not deserialize task.'
BAD_THERMOS_TASK = 'Could not deserialize Thermos task from AssignedTask: %s'
NO_THERMOS_CONFIG = 'Task did not have a thermos config!'
BAD_THERMOS_CONFIG = 'Could not deserialize thermos config: %s'


class TaskInfoError(ValueError):
    """A payload the executor cannot run; ``str()`` is the TASK_FAILED message, one line."""

    def __init__(self, message: str) -> None:
        self.message = ' '.join(message.split())
        super().__init__(self.message)


@dataclass(frozen=True)
class HealthCheckSpec:
    """How to health-check the task; ``kind`` is ``'http'``, ``'shell'``, ``'tcp'`` or ``'none'``.

    ``'none'`` is Aurora's NoopHealthChecker: no shell/tcp check and no ``health`` port, so the
    task is RUNNING as soon as it starts. ``port`` is the resolved port number (http, tcp).
    """

    kind: str
    port: int | None
    endpoint: str
    expected_response: str
    expected_response_code: int
    shell_command: str | None
    initial_interval_secs: float
    interval_secs: float
    max_consecutive_failures: int
    min_consecutive_successes: int
    timeout_secs: float


@dataclass(frozen=True)
class HttpLifecycleSpec:
    """Endpoints to POST on ``http://localhost:<port>`` before the runner's kill (spec §1.6)."""

    port: int
    graceful_shutdown_endpoint: str
    graceful_shutdown_wait_secs: float
    shutdown_endpoint: str
    shutdown_wait_secs: float


@dataclass(frozen=True)
class AnnounceSpec:
    """The task's ServerSet announcement settings (ports come from `ExecutorTask.ports`)."""

    primary_port: str
    zk_path: str | None


@dataclass(frozen=True)
class TaskResources:
    """The Thermos task's reservation: cpu cores, ram/disk bytes, gpus."""

    cpu: float
    ram: int
    disk: int
    gpu: int


@dataclass(frozen=True)
class ExecutorTask:
    """Everything the executor needs from one AssignedTask, decoded and validated."""

    assigned_task: AssignedTask
    task_id: str
    instance: int
    hostname: str
    role: str
    environment: str
    job_name: str
    task: Task  # interpolated; only {{thermos.task_id}} / {{thermos.user}} remain, for the runner
    ports: dict[str, int]  # assignedPorts plus announce aliases, resolved to numbers
    health_check: HealthCheckSpec
    http_lifecycle: HttpLifecycleSpec | None
    announce: AnnounceSpec | None
    resources: TaskResources | None
    container: Container

    @property
    def task_json(self) -> str:
        """The task as the runner's ``--thermos_json`` file expects it."""
        return json.dumps(self.task.get())

    @property
    def docker_image(self) -> str | None:
        """The Docker image for a Docker-containerizer task, else None."""
        return self.container.docker.image if self.container.docker is not None else None

    @property
    def filesystem_image(self) -> Image | None:
        """The image of a Mesos-containerizer task with a filesystem image, else None."""
        mesos = self.container.mesos
        return mesos.image if mesos is not None else None


# --------------------------------------------------------------------------------------------
# Stage 1: bytes -> AssignedTask


def decode_assigned_task(data: bytes) -> AssignedTask:
    """The AssignedTask in ``TaskInfo.data``; `TaskInfoError` (``Could not deserialize task.``)."""
    if not isinstance(data, bytes | bytearray) or not data:
        raise TaskInfoError(UNDECODABLE_TASK)
    transport = TMemoryBuffer(bytes(data))
    # Limits stop a corrupt length prefix from allocating more than the payload could hold.
    protocol = TBinaryProtocol(transport, string_length_limit=len(data), container_length_limit=len(data))
    assigned = AssignedTask()
    try:
        assigned.read(protocol)
    except Exception as e:  # Thrift raises EOFError, TProtocolException, UnicodeError, ...
        log.info('TaskInfo.data is not an AssignedTask: %s', e)
        raise TaskInfoError(UNDECODABLE_TASK) from None
    if transport.cstringio_buf.read(1):
        log.info('TaskInfo.data has bytes after the AssignedTask')
        raise TaskInfoError(UNDECODABLE_TASK)
    if not assigned.taskId or assigned.task is None:
        log.info('TaskInfo.data decodes to an AssignedTask without a task id or TaskConfig')
        raise TaskInfoError(UNDECODABLE_TASK)
    return assigned


def encode_assigned_task(assigned: AssignedTask) -> bytes:
    """The bytes a scheduler would put in ``TaskInfo.data`` (for agents stand-ins and tests)."""
    return serialize(assigned, TBinaryProtocolFactory())


# --------------------------------------------------------------------------------------------
# Stage 2: AssignedTask -> ExecutorTask


def mesos_task_instance_from_assigned_task(assigned: AssignedTask) -> MesosTaskInstance:
    """The executor payload as a MesosTaskInstance bound with ``{{mesos.*}}`` (not interpolated).

    A MesosJob payload is converted as Aurora's ``task_instance_from_job`` does; a legacy
    MesosTaskInstance (recognised by its ``instance`` key) is taken as is.
    """
    config = assigned.task.executorConfig if assigned.task is not None else None
    data = config.data if config is not None else None
    if not data:
        raise TaskInfoError(NO_THERMOS_CONFIG)
    try:
        blob = json.loads(data)
    except (TypeError, ValueError) as e:
        raise TaskInfoError(BAD_THERMOS_CONFIG % e) from None
    if not isinstance(blob, dict):
        raise TaskInfoError(BAD_THERMOS_CONFIG % ('expected a JSON object, got %s' % type(blob).__name__))
    if 'instance' in blob:
        _require(blob, ('task', 'instance', 'role', 'environment'))
        fields = blob
    else:
        # Only what the executor reads is required (Aurora's client always sends cluster too).
        _require(blob, ('task', 'role', 'environment'))
        fields = {key: blob[key] for key in ('task', 'role', 'environment', 'health_check_config',
                                             'announce') if key in blob}
        fields['instance'] = assigned.instanceId or 0
        fields['lifecycle'] = blob.get('lifecycle', DefaultLifecycleConfig.get())
    try:
        instance = MesosTaskInstance(_filter_to_schema(MesosTaskInstance, fields))
    except Exception as e:  # pystachio rejects a wrongly shaped value (a list for a map, ...)
        raise TaskInfoError(BAD_THERMOS_CONFIG % describe_config_error(e)) from None
    context = MesosContext(instance=fields['instance'], hostname=assigned.slaveHost or '')
    return instance.bind(mesos=context)


def _require(blob: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """Fields the executor reads must be present (and the task an object) before pystachio sees them."""
    for name in names:
        if blob.get(name) is None:
            raise TaskInfoError(BAD_THERMOS_CONFIG % ("'%s' is required but missing" % name))
    if not isinstance(blob['task'], dict):
        raise TaskInfoError(BAD_THERMOS_CONFIG % ("'task' must be an object, not %s" % (
            type(blob['task']).__name__)))


def resolve_ports(portmap: Mapping[str, int | str]) -> dict[str, int]:
    """Follow port aliases (``aurora -> http -> 31000``); drop names that end in no number.

    Int-like strings (``'80'``) are numbers. An alias cycle is a `TaskInfoError`.
    """
    resolved: dict[str, int] = {}
    for name in portmap:
        seen = [name]
        value: int | str = portmap[name]
        while isinstance(value, str) and value in portmap and not value.isdigit():
            if value in seen:
                raise TaskInfoError(BAD_THERMOS_TASK % (
                    'announce portmap aliases form a cycle: %s' % ' -> '.join(seen + [value])))
            seen.append(value)
            value = portmap[value]
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                log.warning('Task has unmapped port: %s => %s', name, value)
                continue
        resolved[name] = value
    return resolved


def executor_task_from_assigned_task(assigned: AssignedTask) -> ExecutorTask:
    """Decode, bind and validate the Thermos task; `TaskInfoError` with the TASK_FAILED message."""
    try:
        return _executor_task(assigned)
    except TaskInfoError as e:
        if e.message.startswith(BAD_THERMOS_TASK % ''):
            raise
        raise TaskInfoError(BAD_THERMOS_TASK % e.message) from None
    except Exception as e:  # pystachio raises many types; the user gets one line, the log the rest
        log.debug('decoding the thermos task failed', exc_info=True)
        raise TaskInfoError(BAD_THERMOS_TASK % describe_config_error(e)) from None


def _executor_task(assigned: AssignedTask) -> ExecutorTask:
    instance = mesos_task_instance_from_assigned_task(assigned)
    # The raw task in the instance's scope: pystachio's accessor would interpolate it, and a bad
    # value would then be reported without saying which task, process or field it is in.
    task = instance._schema_data['task'].in_scope(*instance.scopes())
    try:
        ThermosTaskValidator.assert_valid_task(task)
    except ConfigError as e:
        raise TaskInfoError(_CLI_HINT_RE.sub('', str(e))) from None
    announce = _section('announce', lambda: instance.announce() if instance.has_announce() else None)
    announce_portmap: dict[str, int | str] = {}
    if announce is not None:
        announce_portmap.update(_section('announce', lambda: announce.portmap().get()))
    announce_portmap.update(assigned.assignedPorts or {})
    ports = resolve_ports(announce_portmap)

    needed = sorted(ThermosTaskWrapper(task, strict=False).ports() - set(ports))
    if needed:
        raise TaskInfoError("task needs port%s %s, which the scheduler did not assign (assigned: %s)" % (
            's' if len(needed) > 1 else '', ', '.join("'%s'" % n for n in needed),
            ', '.join(sorted(ports)) or 'none'))
    task, _ = task.bind(thermos=ThermosContext(ports=ports)).interpolate()

    role = _section('role', lambda: instance.role().get())
    job = assigned.task.job or JobKey()
    context = ThermosContext(task_id=assigned.taskId, user=role, ports=ports)
    return ExecutorTask(
        assigned_task=assigned,
        task_id=assigned.taskId,
        instance=_section('instance', lambda: instance.instance().get()),
        hostname=assigned.slaveHost or '',
        role=role,
        environment=job.environment or _section('environment', lambda: instance.environment().get()),
        job_name=job.name or task.name().get(),
        task=task,
        ports=ports,
        health_check=_section('health_check_config', lambda: _health_check(
            instance.health_check_config(), ports, context)),
        http_lifecycle=_section('lifecycle', lambda: _http_lifecycle(instance, ports)),
        announce=_announce(announce),
        resources=_resources(task),
        container=assigned.task.container or Container(mesos=None),
    )


# The loader's messages end with command-line advice (-E NAME=VALUE) that means nothing here.
_CLI_HINT_RE = re.compile(r'bind it with -E \S+=VALUE; ')

T = TypeVar('T')


def _section(name: str, read: Callable[[], T]) -> T:
    """Run `read`; a pystachio error becomes a TaskInfoError that names the job's section."""
    try:
        return read()
    except TaskInfoError:
        raise
    except Exception as e:
        raise TaskInfoError('%s: %s' % (name, describe_config_error(e))) from None


def _health_check(config: Any, ports: Mapping[str, int], context: ThermosContext) -> HealthCheckSpec:
    checker = config.health_checker()
    http = checker.http() if checker.has_http() else None
    settings: dict[str, Any] = dict(
        endpoint=http.endpoint().get() if http is not None else '/health',
        expected_response=http.expected_response().get() if http is not None else 'ok',
        expected_response_code=http.expected_response_code().get() if http is not None else 0,
        initial_interval_secs=float(config.initial_interval_secs().get()),
        interval_secs=float(config.interval_secs().get()),
        max_consecutive_failures=config.max_consecutive_failures().get(),
        min_consecutive_successes=config.min_consecutive_successes().get(),
        timeout_secs=float(config.timeout_secs().get()),
    )
    if checker.has_shell():
        command, refs = checker.shell().shell_command().bind(thermos=context).interpolate()
        if refs:
            raise TaskInfoError('health check shell_command has unbound template variables: %s' % (
                ', '.join(sorted('{{%s}}' % ref.address() for ref in refs))))
        return HealthCheckSpec(kind='shell', port=None, shell_command=command.get(), **settings)
    if checker.has_tcp():
        name = checker.tcp().port().get()
        if name not in ports:
            raise TaskInfoError("tcp health check port '%s' is not one of the task's ports (%s)" % (
                name, ', '.join(sorted(ports)) or 'none'))
        return HealthCheckSpec(kind='tcp', port=ports[name], shell_command=None, **settings)
    if 'health' in ports:
        return HealthCheckSpec(kind='http', port=ports['health'], shell_command=None, **settings)
    return HealthCheckSpec(kind='none', port=None, shell_command=None, **settings)


def _http_lifecycle(instance: MesosTaskInstance, ports: Mapping[str, int]) -> HttpLifecycleSpec | None:
    """Only with ``lifecycle.http`` whose port resolved; otherwise the runner is stopped directly."""
    if not instance.has_lifecycle() or not instance.lifecycle().has_http():
        return None
    http = instance.lifecycle().http()
    port = http.port().get()
    if port not in ports:
        return None
    return HttpLifecycleSpec(
        port=ports[port],
        graceful_shutdown_endpoint=http.graceful_shutdown_endpoint().get(),
        graceful_shutdown_wait_secs=float(http.graceful_shutdown_wait_secs().get()),
        shutdown_endpoint=http.shutdown_endpoint().get(),
        shutdown_wait_secs=float(http.shutdown_wait_secs().get()))


def _announce(announce: Announcer | None) -> AnnounceSpec | None:
    if announce is None:
        return None
    return AnnounceSpec(primary_port=announce.primary_port().get(),
                        zk_path=announce.zk_path().get() if announce.has_zk_path() else None)


def _resources(task: Task) -> TaskResources | None:
    if not task.has_resources():
        return None
    resources = task.resources()
    return TaskResources(cpu=float(resources.cpu().get()), ram=int(resources.ram().get()),
                         disk=int(resources.disk().get()), gpu=int(resources.gpu().get()))


__all__ = (
    'AnnounceSpec', 'ExecutorTask', 'HealthCheckSpec', 'HttpLifecycleSpec', 'TaskInfoError',
    'TaskResources', 'decode_assigned_task', 'encode_assigned_task', 'executor_task_from_assigned_task',
    'mesos_task_instance_from_assigned_task', 'resolve_ports',
)
