"""The pystachio schema of an Aurora job, as far as the executor reads it.

Aurora's client serialises the interpolated job (a `MesosJob`, minus `update_config` and
`instances`) into ``TaskConfig.executorConfig.data``; older clients sent a `MesosTaskInstance`.
Field names, types and defaults are Aurora's (``apache.aurora.config.schema.base``) so that
payloads from any Aurora client decode unchanged.  Keys this schema does not know are dropped on
load, so newer clients keep working.

Additions (not in Aurora): `TcpHealthChecker`, a health check that only connects to a named port.
Aurora readers never see it, because it is absent unless set.
"""

from pystachio import Choice, Enum

from .schema_base import (
    Boolean,
    Default,
    Float,
    Integer,
    List,
    Map,
    Required,
    String,
    Struct,
    Task,
)


class MesosContext(Struct):
    """Bound by the executor as ``{{mesos.*}}``."""

    instance = Required(Integer)
    hostname = Required(String)


class UpdateConfig(Struct):
    """Scheduler-only; clients strip it from the executor payload, kept so old payloads load."""

    batch_size = Default(Integer, 1)
    watch_secs = Default(Integer, 45)
    max_per_shard_failures = Default(Integer, 0)
    max_total_failures = Default(Integer, 0)
    rollback_on_failure = Default(Boolean, True)
    wait_for_batch_completion = Default(Boolean, False)
    pulse_interval_secs = Integer
    sla_aware = Default(Boolean, False)


class HttpHealthChecker(Struct):
    """GET ``http://localhost:{{health}}<endpoint>``; a check passes on the expected body/code."""

    endpoint = Default(String, '/health')
    expected_response = Default(String, 'ok')
    expected_response_code = Default(Integer, 0)  # 0 = any code


class ShellHealthChecker(Struct):
    """Runs ``/bin/bash -c <shell_command>`` as the role user; exit 0 passes."""

    shell_command = Required(String)


class TcpHealthChecker(Struct):
    """Not in Aurora: a check passes when a TCP connection to the named port succeeds."""

    port = Default(String, 'health')


class HealthCheckerConfig(Struct):
    """At most one is used: shell, else tcp, else http (when the task has a ``health`` port)."""

    http = HttpHealthChecker
    shell = ShellHealthChecker
    tcp = TcpHealthChecker


DefaultHealthChecker = HealthCheckerConfig(http=HttpHealthChecker())


class HealthCheckConfig(Struct):
    health_checker = Default(HealthCheckerConfig, DefaultHealthChecker)
    initial_interval_secs = Default(Float, 15.0)  # failures inside this grace period are forgiven
    interval_secs = Default(Float, 10.0)
    max_consecutive_failures = Default(Integer, 0)
    min_consecutive_successes = Default(Integer, 1)  # passes needed before TASK_RUNNING
    timeout_secs = Default(Float, 1.0)


class HttpLifecycleConfig(Struct):
    """Endpoints POSTed, in order, before the task's processes are signalled."""

    port = Default(String, 'health')
    graceful_shutdown_endpoint = Default(String, '/quitquitquit')
    shutdown_endpoint = Default(String, '/abortabortabort')
    graceful_shutdown_wait_secs = Default(Integer, 5)
    shutdown_wait_secs = Default(Integer, 5)


class LifecycleConfig(Struct):
    http = HttpLifecycleConfig


DisableLifecycle = LifecycleConfig()
DefaultLifecycleConfig = LifecycleConfig(http=HttpLifecycleConfig())


class Announcer(Struct):
    """ServerSet announcement; ``portmap`` aliases names to other names or to fixed numbers."""

    primary_port = Default(String, 'http')
    portmap = Default(Map(String, String), {'aurora': '{{primary_port}}'})
    zk_path = String  # honoured only with --announcer-allow-custom-serverset-path


class MesosTaskInstance(Struct):
    """The legacy executor payload (recognised by its ``instance`` key)."""

    task = Required(Task)
    instance = Required(Integer)
    role = Required(String)
    announce = Announcer
    environment = Required(String)
    health_check_config = Default(HealthCheckConfig, HealthCheckConfig())
    lifecycle = LifecycleConfig


class Parameter(Struct):
    name = Required(String)
    value = Required(String)


class Docker(Struct):
    image = Required(String)
    parameters = Default(List(Parameter), [])


class AppcImage(Struct):
    name = Required(String)
    image_id = Required(String)


class DockerImage(Struct):
    name = Required(String)
    tag = Required(String)


Mode = Enum('RO', 'RW')


class Volume(Struct):
    container_path = Required(String)
    host_path = Required(String)
    mode = Required(Mode)


class Mesos(Struct):
    image = Choice([AppcImage, DockerImage])
    volumes = Default(List(Volume), [])


class Container(Struct):
    """Deprecated wrapper (``Container(docker=Docker(...))``); jobs now set `Docker` directly."""

    docker = Docker


class PartitionPolicy(Struct):
    reschedule = Default(Boolean, True)
    delay_secs = Default(Integer, 0)


class Metadata(Struct):
    key = Required(String)
    value = Required(String)


class ExecutorConfig(Struct):
    name = Default(String, 'AuroraExecutor')
    data = Default(String, '')


class MesosJob(Struct):
    """The job as the client sends it to the executor."""

    name = Default(String, '{{task.name}}')
    role = Required(String)
    contact = String
    cluster = Required(String)
    environment = Required(String)
    instances = Default(Integer, 1)
    task = Required(Task)
    announce = Announcer
    tier = String
    cron_schedule = String
    cron_collision_policy = Default(String, 'KILL_EXISTING')
    update_config = Default(UpdateConfig, UpdateConfig())
    constraints = Map(String, String)
    metadata = Default(List(Metadata), [])
    service = Default(Boolean, False)
    max_task_failures = Default(Integer, 1)
    production = Default(Boolean, False)
    priority = Default(Integer, 0)
    health_check_config = Default(HealthCheckConfig, HealthCheckConfig())
    lifecycle = Default(LifecycleConfig, DefaultLifecycleConfig)
    task_links = Map(String, String)
    executor_config = ExecutorConfig
    enable_hooks = Default(Boolean, False)
    partition_policy = PartitionPolicy
    container = Choice([Container, Docker, Mesos])


Job = MesosJob
Service = Job(service=True)

__all__ = (
    'MesosContext', 'UpdateConfig', 'HttpHealthChecker', 'ShellHealthChecker', 'TcpHealthChecker',
    'HealthCheckerConfig', 'DefaultHealthChecker', 'HealthCheckConfig', 'HttpLifecycleConfig',
    'LifecycleConfig', 'DisableLifecycle', 'DefaultLifecycleConfig', 'Announcer', 'MesosTaskInstance',
    'Parameter', 'Docker', 'AppcImage', 'DockerImage', 'Mode', 'Volume', 'Mesos', 'Container',
    'PartitionPolicy', 'Metadata', 'ExecutorConfig', 'MesosJob', 'Job', 'Service',
)
