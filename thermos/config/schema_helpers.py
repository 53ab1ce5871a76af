"""Helpers that ``.thermos`` files use to compose tasks out of smaller pieces.

Behaviour follows Aurora's helpers of the same names (configs rely on it), with two deliberate
differences: merged process and constraint lists keep first-seen order instead of set order, so
the same config always yields the same task JSON; and option rendering treats only ``None`` and
``''`` as "bare flag" (Aurora also swallowed ``0`` and ``False``).
"""

from collections.abc import Iterable
from typing import Any

from pystachio import Empty, Integer, String

from .schema_base import GB, Constraint, Process, Resources, Task

__all__ = (
    'order',
    'combine_tasks',
    'concat_tasks',
    'java_options',
    'python_options',
    'SequentialTask',
    'SimpleTask',
    'Options',
    'Processes',
    'Tasks',
    'Units',
)

_RESOURCE_FIELDS = ('cpu', 'ram', 'disk', 'gpu')


def _flatten(items: tuple[Any, ...]) -> list[Any]:
    """Accept both f(a, b, c) and f([a, b, c]), as Aurora's callers use both spellings."""
    if len(items) == 1 and not isinstance(items[0], (Resources, Integer, int, float, str)) \
            and items[0] is not Empty and isinstance(items[0], Iterable):
        return list(items[0])
    return list(items)


def _dedupe(items: Iterable[Any]) -> list[Any]:
    """Drop repeats but keep first-seen order, so merged tasks serialise deterministically."""
    seen: set[Any] = set()
    result = []
    for item in items:
        if item not in seen:
            seen.add(item)
            result.append(item)
    return result


def _number(value: Any) -> int | float:
    """Treat an unset field (``Empty``) as zero, which is what adding/maxing resources needs."""
    if value is Empty or value is None:
        return 0
    return value.get() if hasattr(value, 'get') else value


class Units:
    """Arithmetic over resources and finalization waits, for the task combinators."""

    @classmethod
    def optional_resources(cls, resources: Any) -> Resources:
        return Resources() if resources is Empty or resources is None else resources

    @classmethod
    def _fieldwise(cls, combine: Any, resources: Iterable[Any]) -> Resources:
        totals = dict.fromkeys(_RESOURCE_FIELDS, 0)
        for item in resources:
            item = cls.optional_resources(item)
            for field in _RESOURCE_FIELDS:
                totals[field] = combine(totals[field], _number(getattr(item, field)()))
        return Resources(**totals)

    @classmethod
    def resources_sum(cls, *resources: Any) -> Resources:
        """Resources needed to run the inputs side by side (unset fields count as zero)."""
        return cls._fieldwise(lambda a, b: a + b, _flatten(resources))

    @classmethod
    def resources_max(cls, *resources: Any) -> Resources:
        """Resources needed to run the inputs one after another."""
        return cls._fieldwise(max, _flatten(resources))

    @classmethod
    def finalization_wait_sum(cls, *waits: Any) -> int:
        return sum(_number(wait) for wait in _flatten(waits))

    @classmethod
    def finalization_wait_max(cls, *waits: Any) -> int:
        return max([0] + [_number(wait) for wait in _flatten(waits)])

    @classmethod
    def processes_merge(cls, tasks: Iterable[Task]) -> list[Process]:
        return _dedupe(process for task in tasks for process in task.processes())

    @classmethod
    def constraints_merge(cls, tasks: Iterable[Task]) -> list[Constraint]:
        return _dedupe(constraint for task in tasks for constraint in task.constraints())


class Processes:
    """Helpers over Process objects."""

    @classmethod
    def _process_name(cls, process: Any) -> Any:
        if isinstance(process, Process):
            return process.name()
        if isinstance(process, (str, String)):
            return process
        raise ValueError('order() takes Process objects or process names, not %r' % (process,))

    @classmethod
    def order(cls, *processes: Any) -> list[Constraint]:
        """One constraint running ``processes`` in sequence; add lists together to add chains."""
        return [Constraint(order=[cls._process_name(process) for process in processes])]


class Tasks:
    """Task combinators: build larger tasks out of smaller ones."""

    SIMPLE_CPU = 1.0
    SIMPLE_RAM = 1 * GB
    SIMPLE_DISK = 1 * GB

    @classmethod
    def _merged_base(cls, tasks: tuple[Task, ...]) -> Task:
        # The last task lends its identity (name, user, limits) to the result.
        return tasks[-1](processes=Units.processes_merge(tasks))

    @classmethod
    def combine(cls, *tasks: Task, **kw: Any) -> Task:
        """Run every process of every task in parallel."""
        if not tasks:
            return Task()
        return cls._merged_base(tasks)(
            resources=Units.resources_sum(*(task.resources() for task in tasks)),
            constraints=Units.constraints_merge(tasks),
            finalization_wait=Units.finalization_wait_max(
                *(task.finalization_wait() for task in tasks)),
            **kw)

    @classmethod
    def concat(cls, *tasks: Task, **kw: Any) -> Task:
        """Run the tasks one after another: every process of T(k) before any process of T(k+1)."""
        if not tasks:
            return Task()
        constraints = Units.constraints_merge(tasks)
        for earlier, later in zip(tasks, tasks[1:], strict=False):
            for p1 in earlier.processes():
                for p2 in later.processes():
                    if p1 != p2:
                        constraints.extend(Processes.order(p1, p2))
        return cls._merged_base(tasks)(
            resources=Units.resources_max(*(task.resources() for task in tasks)),
            constraints=constraints,
            finalization_wait=Units.finalization_wait_sum(
                *(task.finalization_wait() for task in tasks)),
            **kw)

    @classmethod
    def simple(cls, name: str, command: str) -> Task:
        """A runnable one-process task with modest default resources."""
        return Task(
            name=name,
            processes=[Process(name=name, cmdline=command)],
            resources=Resources(cpu=cls.SIMPLE_CPU, ram=cls.SIMPLE_RAM, disk=cls.SIMPLE_DISK))

    @classmethod
    def sequential(cls, task: Task) -> Task:
        """Run the task's processes strictly in list order."""
        constraints = task.constraints()
        if constraints is not Empty and len(constraints.get()) > 0:
            raise ValueError('Cannot turn a Task with existing constraints into a SequentialTask!')
        processes = task.processes()
        if processes is Empty or len(processes.get()) == 0:
            return task
        return task(constraints=Processes.order(*processes))


class Options:
    """Render command-line options for ``cmdline`` strings."""

    @classmethod
    def render_option(cls, short_prefix: str, long_prefix: str, option: str, value: Any = None) -> str:
        flag = (short_prefix if len(option) == 1 else long_prefix) + option
        return flag if value is None or value == '' else '%s %s' % (flag, value)

    @classmethod
    def render_options(cls, short_prefix: str, long_prefix: str, *options: Any,
                       **kw_options: Any) -> list[str]:
        rendered = []
        for option in options:
            if isinstance(option, str):
                rendered.append(cls.render_option(short_prefix, long_prefix, option))
            elif isinstance(option, dict):
                for name, value in option.items():
                    rendered.append(cls.render_option(short_prefix, long_prefix, name, value))
            else:
                raise ValueError('Options take names, dicts or keywords, not %r' % (option,))
        for name, value in kw_options.items():
            rendered.append(cls.render_option(short_prefix, long_prefix, name, value))
        return rendered

    @classmethod
    def java(cls, *options: Any, **kw_options: Any) -> str:
        """Every option as ``-name`` (Java style): ``java_options('a', b=1) == '-a -b 1'``."""
        return ' '.join(cls.render_options('-', '-', *options, **kw_options))

    @classmethod
    def python(cls, *options: Any, **kw_options: Any) -> str:
        """``-x`` for one letter, ``--name`` otherwise: ``python_options('a', bb=1) == '-a --bb 1'``."""
        return ' '.join(cls.render_options('-', '--', *options, **kw_options))


def SimpleTask(name: str, command: str) -> Task:
    """A one-process task named after its process."""
    return Tasks.simple(name, command)


def SequentialTask(*args: Any, **kw: Any) -> Task:
    """A Task whose processes run strictly in list order."""
    return Tasks.sequential(Task(*args, **kw))


order = Processes.order
combine_tasks = Tasks.combine
concat_tasks = Tasks.concat
java_options = Options.java
python_options = Options.python
