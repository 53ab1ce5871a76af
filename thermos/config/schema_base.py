"""The pystachio schema of a Thermos task: what a ``.thermos`` file or task JSON may contain.

Field names, types and defaults match Apache Aurora's so that existing configs and the task JSON
kept under ``tasks/{active,finished}`` stay interchangeable.  The one addition is the opt-in
``Process.backoff``; it defaults to ``Empty`` so a task that does not set it serialises exactly as
Aurora would write it (no ``backoff`` key at all).
"""

from pystachio import (
    Boolean,
    Default,
    Empty,
    Enum,
    Float,
    Integer,
    List,
    Map,
    Required,
    String,
    Struct,
)

# Binary size units, so configs can write ``ram=512 * MB``.
BYTES = 1
KB = 1024 * BYTES
MB = 1024 * KB
GB = 1024 * MB
TB = 1024 * GB


class ThermosContext(Struct):
    """Bound by the runner as ``{{thermos.*}}``; values are only known at launch time."""

    ports = Map(String, Integer)
    task_id = String
    user = String


class Resources(Struct):
    cpu = Required(Float)
    ram = Required(Integer)
    disk = Required(Integer)
    gpu = Default(Integer, 0)


class Constraint(Struct):
    """``order`` lists process names that must run one after another, each after its predecessor."""

    order = List(String)


class RotatePolicy(Struct):
    log_size = Default(Integer, 100 * MB)  # bytes
    backups = Default(Integer, 5)


LoggerDestination = Enum('file', 'console', 'both', 'none')
LoggerMode = Enum('standard', 'rotate')


class Logger(Struct):
    destination = Default(LoggerDestination, LoggerDestination('file'))
    mode = Default(LoggerMode, LoggerMode('standard'))
    rotate = RotatePolicy


class RestartBackoff(Struct):
    """Opt-in exponential delay between restarts of a failing process (not in Aurora).

    Without it the only restart throttle is ``min_duration`` (Aurora's behaviour); with it the
    planner grows the delay after each consecutive failure, from ``initial`` by ``multiplier`` up
    to ``maximum``.  Aurora readers never see it, because it is absent unless set.
    """

    initial = Default(Float, 1.0)  # seconds before the first restart after a failure
    maximum = Default(Float, 300.0)  # cap on the delay
    multiplier = Default(Float, 2.0)
    jitter = Default(Float, 0.25)  # +/- fraction of the delay, drawn uniformly
    reset_after = Default(Float, 600.0)  # a run that lasted this long resets the delay


class Process(Struct):
    cmdline = Required(String)
    name = Required(String)

    # Reserved by Aurora; Thermos never reads it.
    resources = Resources

    max_failures = Default(Integer, 1)  # failed runs before the process is failed; 0 = unlimited
    daemon = Default(Boolean, False)  # rerun after success too
    ephemeral = Default(Boolean, False)  # never blocks task completion
    min_duration = Default(Integer, 5)  # seconds between the end of one run and the next start
    final = Default(Boolean, False)  # runs in the finalizing plan, after all regular processes
    logger = Default(Logger, Empty)
    backoff = Default(RestartBackoff, Empty)


class Task(Struct):
    name = Default(String, '{{processes[0].name}}')
    processes = List(Process)

    constraints = Default(List(Constraint), [])
    resources = Resources
    max_failures = Default(Integer, 1)  # failed processes before the task fails; 0 = unlimited
    max_concurrency = Default(Integer, 0)  # 0 = no limit
    finalization_wait = Default(Integer, 30)  # seconds allowed for the finalizing plan

    # Aurora's stop-gap for MESOS-3546: the user to run as when the executor does not say.
    user = String


__all__ = (
    'BYTES', 'KB', 'MB', 'GB', 'TB',
    'ThermosContext', 'Resources', 'Constraint', 'RotatePolicy', 'LoggerDestination', 'LoggerMode',
    'Logger', 'RestartBackoff', 'Process', 'Task',
    # pystachio building blocks, so ``from schema_base import *`` is enough to write a config.
    'Boolean', 'Default', 'Empty', 'Enum', 'Float', 'Integer', 'List', 'Map', 'Required', 'String',
    'Struct',
)
