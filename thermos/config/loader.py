"""Load Thermos tasks from ``.thermos`` files and task JSON, bind them and validate them.

Reporting errors
----------------
Everything this module raises for bad input is a `ConfigError` (a ``ValueError``) whose ``str()``
is ONE line saying where the problem is and how to fix it, e.g.::

    examples/bad.thermos: task 'hello': process 'a/b': invalid process name (...)
    examples/bad.thermos:3: SyntaxError: invalid syntax

Front ends (``thermos`` CLI, ``thermos_runner``) should print ``describe_config_error(exc)``,
which turns any exception met while loading or validating a config (including ``OSError``,
pystachio and planner errors) into that single line, never a traceback.

Typical use::

    loader = ThermosConfigLoader.load('hello.thermos', bindings=[{'version': '1.2'}])
    task = loader.tasks()[0]          # a ThermosTaskWrapper, remembers its file in .source
    task.assert_valid()               # ThermosTaskValidator.assert_valid_task(task.task, source=...)

``load()`` does not validate, so ``thermos inspect`` can show a task that is not runnable yet;
``load_json()`` validates, as Aurora's runner did.  A JSON file that cannot be read or parsed gives
a loader with no tasks (Aurora's behaviour) whose ``load_error`` says why, so a front end can print
``describe_config_error(loader.load_error)`` instead of a bare "no tasks".
"""

from __future__ import annotations

import difflib
import json
import os
import re
import traceback
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pystachio import Empty, Ref
from pystachio.base import Object
from pystachio.basic import Boolean, EnumContainer, Float, Integer, String
from pystachio.composite import Structural
from pystachio.config import Config
from pystachio.container import ListContainer, MapContainer
from pystachio.parsing import MustacheParser

from thermos.common.atomic import write_atomically
from thermos.common.backoff import BackoffPolicy
from thermos.common.planner import InvalidSchedule, TaskPlanner
from thermos.config.plain import PlainStruct

from .schema import Task, ThermosContext

__all__ = (
    'ConfigError',
    'ConfigLoadError',
    'ConfigNotFound',
    'InvalidTaskError',
    'PortExtractor',
    'ThermosConfigLoader',
    'ThermosProcessWrapper',
    'ThermosTaskValidator',
    'ThermosTaskWrapper',
    'describe_config_error',
)

# Aurora-era configs import the schema under its old name; the rewrite keeps line numbers intact.
_LEGACY_IMPORT_RE = re.compile(r'^(\s*(?:from|import)\s+)apache\.thermos\.config\b', re.MULTILINE)

_INTERPOLATION_ERRORS = (Object.CoercionError, MustacheParser.Uninterpolatable)



# --------------------------------------------------------------------------------------------
# Errors


class ConfigError(ValueError):
    """Bad config input; ``str()`` is one line: location, the task/process/constraint, the problem."""

    def __init__(self, problem: str, *, source: str | None = None, line: int | None = None,
                 task: str | None = None, process: str | None = None,
                 process_index: int | None = None, constraint: str | None = None,
                 unnamed_task: bool = False) -> None:
        super().__init__(problem)
        self.problem = ' '.join(str(problem).split())
        self.source = source
        self.line = line
        self.task = task
        self.process = process
        self.process_index = process_index
        self.constraint = constraint
        self.unnamed_task = unnamed_task

    def located(self, source: str | None) -> ConfigError:
        """Fill in the file name when the raiser did not know it; keeps the exception's type."""
        if self.source is None and source is not None:
            self.source = source
        return self

    def __str__(self) -> str:
        parts = []
        if self.source is not None and self.line is not None:
            parts.append('%s:%d' % (self.source, self.line))
        elif self.source is not None:
            parts.append(self.source)
        elif self.line is not None:
            parts.append('line %d' % self.line)
        if self.task is not None:
            parts.append("task '%s'" % self.task)
        elif self.unnamed_task:
            parts.append('unnamed task')
        if self.process is not None:
            parts.append("process '%s'" % self.process)
        elif self.process_index is not None:
            parts.append('process #%d (unnamed)' % self.process_index)
        if self.constraint is not None:
            parts.append('constraint %s' % self.constraint)
        parts.append(self.problem)
        return ': '.join(parts)


class ConfigLoadError(ConfigError, Config.InvalidConfigError):
    """A ``.thermos`` file could not be read or executed (syntax error, exception, bad include)."""


class ConfigNotFound(ConfigLoadError, Config.NotFound):
    """The config file (or an included file) does not exist."""


class InvalidTaskError(ConfigError):
    """The task loaded, but cannot be run as written."""


# --------------------------------------------------------------------------------------------
# Small helpers over pystachio objects.  They read pystachio's per-object data directly because
# its public accessors interpolate eagerly and raise on the very values we want to report.


def _field(struct: Structural, name: str) -> Any:
    """The raw field value scoped as its parent sees it, or ``Empty``."""
    value = struct._schema_data[name]
    return value if value is Empty else value.in_scope(*struct.scopes())


def _elements(container: ListContainer) -> list[Any]:
    """The raw list elements, scoped as the list sees them."""
    scopes = container.scopes()
    return [element.in_scope(*scopes) for element in container._values]


def _task_processes(task: Task) -> list[Any]:
    processes = _field(task, 'processes')
    return [] if processes is Empty else _elements(processes)


def _plain(value: Any) -> Any:
    """Interpolate a simple field to a Python value; None if unset or not fully bound."""
    if value is Empty:
        return None
    try:
        interpolated, refs = value.interpolate()
    except _INTERPOLATION_ERRORS:
        return None
    return None if refs else interpolated.get()


def _task_name(task: Task) -> str | None:
    name = _plain(_field(task, 'name'))
    return None if name is None else str(name)


def _process_name(process: Any) -> str | None:
    name = _plain(_field(process, 'name'))
    if name is None and _field(process, 'name') is not Empty:
        return str(_field(process, 'name').get())  # an unbound template: show it as written
    return None if name is None else str(name)


def _refs_text(refs: Iterable[Ref]) -> str:
    return ', '.join(sorted('{{%s}}' % ref.address() for ref in refs))


def _bind_hint(refs: Iterable[Ref]) -> str:
    names = sorted(ref.address() for ref in refs if not ref.address().startswith('thermos.'))
    return 'bind it with -E %s=VALUE' % (names[0] if names else 'NAME')


def _error_context(task: Task, source: str | None) -> dict[str, Any]:
    name = _task_name(task)
    return {'source': source, 'task': name, 'unnamed_task': name is None}


def _process_context(process: Any, index: int) -> dict[str, Any]:
    name = _process_name(process)
    return {'process': name, 'process_index': None if name is not None else index}


_TYPE_NAMES = {Integer: 'an integer', Float: 'a number', Boolean: 'true or false', String: 'a string'}


def _describe_bad_value(value: Any) -> str:
    """Why one simple value failed its typecheck, phrased as what to write instead."""
    try:
        _, refs = value.interpolate()
    except _INTERPOLATION_ERRORS as e:
        refs, reason = [], str(e)
    else:
        reason = value.check().message()
    if refs:
        return 'uses unbound template variable %s (%s, or write a literal value)' % (
            _refs_text(refs), _bind_hint(refs))
    if isinstance(value, EnumContainer):
        expected = 'one of %s' % ', '.join(type(value).VALUES)
    else:
        expected = next((text for kind, text in _TYPE_NAMES.items() if isinstance(value, kind)),
                        None)
    if expected is None:
        return reason
    if 'Maximum replacements' in reason:
        return 'template refers to itself (%s)' % reason
    return 'must be %s, got %r' % (expected, value.get())


def _first_type_error(obj: Any, path: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], str] | None:
    """The path of the first field that fails to typecheck and why, or None if all is well."""
    if isinstance(obj, Structural):
        for name, signature in obj.TYPEMAP.items():
            value = _field(obj, name)
            if value is Empty:
                if signature.required:
                    return path + (name,), 'is required but not set'
                continue
            if not value.check().ok():
                return _first_type_error(value, path + (name,)) or (
                    path + (name,), _describe_bad_value(value))
        return None
    if isinstance(obj, ListContainer):
        for index, element in enumerate(_elements(obj)):
            if not element.check().ok():
                return _first_type_error(element, path + (index,)) or (
                    path + (index,), _describe_bad_value(element))
        return None
    if isinstance(obj, MapContainer):
        check = obj.check()
        return None if check.ok() else (path, check.message())
    check = obj.check()
    return None if check.ok() else (path, _describe_bad_value(obj))


def _path_text(path: Iterable[Any]) -> str:
    text = ''
    for part in path:
        text += '[%d]' % part if isinstance(part, int) else ('.' if text else '') + part
    return text


def _type_error(task: Task, source: str | None) -> InvalidTaskError | None:
    """The first typecheck failure of ``task`` as a one-line error naming the process at fault."""
    try:
        if task.check().ok():
            return None
    except _INTERPOLATION_ERRORS:
        pass
    context = _error_context(task, source)
    found = _first_type_error(task)
    if found is None:
        return InvalidTaskError('does not typecheck: %s' % task.check().message(), **context)
    path, problem = found
    if len(path) >= 2 and path[0] == 'processes' and isinstance(path[1], int):
        context.update(_process_context(_task_processes(task)[path[1]], path[1]))
        path = path[2:]
    if path:
        problem = '%s %s' % (_path_text(path), problem)
    else:
        problem = 'is malformed: %s' % problem
    return InvalidTaskError(problem, **context)


# --------------------------------------------------------------------------------------------
# Ports and processes


class PortExtractor:
    """Finds the named ports a task or process needs (its ``{{thermos.ports[NAME]}}`` refs)."""

    class InvalidPorts(ConfigError):
        pass

    PORT_SCOPE = Ref.from_address('thermos.ports')

    @classmethod
    def extract(cls, obj: Any) -> list[str]:
        """Names of the ports ``obj`` refers to; a ref like ``thermos.ports.http`` is an error."""
        _, unbound = obj.interpolate()
        ports = []
        for ref in unbound:
            subscope = cls.PORT_SCOPE.scoped_to(ref)
            if subscope is None:
                continue
            if not subscope.is_index():
                raise cls.InvalidPorts('bad port reference {{%s}} (write it as {{thermos.ports[%s]}})' % (
                    ref.address(), subscope.action().value))
            ports.append(subscope.action().value)
        return ports


_UNSAFE_CHARS_RE = re.compile(r'[\x00-\x1f\x7f/]')
MAX_NAME_BYTES = 255


def invalid_name(name: str) -> str | None:
    """Why `name` cannot be a process name or task id (None if it can).

    Both become path components and appear in logs, so they are kept to one printable line: no
    '/', no control characters (a newline in a name could forge lines in files root appends to),
    no leading '.', at most 255 bytes. Aurora accepted anything without '/' and a leading '.';
    the names its users write (letters, digits, '_', '-', '.') are all still valid.
    """
    if not name:
        return "must not be empty"
    if name.startswith('.'):
        return "must not start with '.'"
    if _UNSAFE_CHARS_RE.search(name):
        return "must not contain '/' or control characters such as newlines"
    if len(name.encode('utf-8', 'surrogateescape')) > MAX_NAME_BYTES:
        return "must be at most %d bytes" % MAX_NAME_BYTES
    return None


def printable(name: str) -> str:
    """A name as one quoted line, control characters escaped."""
    return repr(name)


class ThermosProcessWrapper:
    """Process-level checks: its name and the ports it uses."""

    class InvalidProcess(ConfigError):
        pass

    def __init__(self, process: Any) -> None:
        self._process = process

    def ports(self) -> list[str]:
        try:
            return PortExtractor.extract(self._process)
        except PortExtractor.InvalidPorts as e:
            raise self.InvalidProcess(e.problem, process=_process_name(self._process)) from None

    @classmethod
    def assert_valid_process_name(cls, name: str) -> None:
        problem = invalid_name(name)
        if problem is not None:
            raise cls.InvalidProcess("invalid process name: %s" % problem,
                                     process=name.encode('unicode_escape').decode('ascii'))


# --------------------------------------------------------------------------------------------
# Tasks


def _filter_to_schema(schema: Any, data: Any) -> Any:
    """Drop keys the schema does not know, at every depth, so newer task JSON still loads."""
    if isinstance(schema, type) and issubclass(schema, Structural) and isinstance(data, Mapping):
        return {key: _filter_to_schema(schema.TYPEMAP[key].klazz, value)
                for key, value in data.items() if key in schema.TYPEMAP}
    if isinstance(schema, type) and issubclass(schema, ListContainer) and isinstance(data, list):
        return [_filter_to_schema(schema.TYPE, item) for item in data]
    if isinstance(schema, type) and issubclass(schema, MapContainer) and isinstance(data, Mapping):
        return {key: _filter_to_schema(schema.VALUETYPE, value) for key, value in data.items()}
    return data


class ThermosTaskWrapper:
    """A Task with its bindings applied, plus where it came from (for error messages)."""

    InvalidTask = InvalidTaskError

    def __init__(self, task: Task, bindings: Iterable[Any] | None = None, strict: bool = True,
                 source: str | None = None) -> None:
        if bindings:
            task = task.bind(*bindings)
        if strict:
            error = _type_error(task, source)
            if error is not None:
                raise error
        self._task = task
        self.source = source

    @property
    def task(self) -> Task:
        return self._task

    def ports(self) -> set[str]:
        """Names of the ports the task needs bound (``-P NAME:PORT``) before it can run."""
        context = _error_context(self._task, self.source)
        try:
            try:  # one walk of the whole task; per process only to name the one at fault
                return set(PortExtractor.extract(self._task))
            except PortExtractor.InvalidPorts:
                pass
            for index, process in enumerate(_task_processes(self._task)):
                try:
                    PortExtractor.extract(process)
                except PortExtractor.InvalidPorts as e:
                    raise InvalidTaskError(e.problem, **context,
                                           **_process_context(process, index)) from None
            return set(PortExtractor.extract(self._task))
        except PortExtractor.InvalidPorts as e:
            raise InvalidTaskError(e.problem, **context) from None
        except _INTERPOLATION_ERRORS:
            error = _type_error(self._task, self.source)
            if error is None:
                raise
            raise error from None

    def assert_valid(self) -> None:
        ThermosTaskValidator.assert_valid_task(self._task, source=self.source)

    def to_json(self) -> str:
        return json.dumps(self._task.get())

    def to_file(self, filename: str) -> None:
        """Write the interpolated task JSON (the format of ``tasks/{active,finished}/<id>``)."""
        interpolated, _ = self._task.interpolate()
        write_atomically(filename, json.dumps(interpolated.get()).encode())  # readers never see half

    @staticmethod
    def from_file(filename: str, **kw: Any) -> ThermosTaskWrapper | None:
        """The task in a JSON file, or None if it cannot be read, parsed or (if strict) typechecked."""
        try:
            return ThermosTaskWrapper._from_file(filename, **kw)
        except Exception:
            return None

    @staticmethod
    def _from_file(filename: str, **kw: Any) -> ThermosTaskWrapper:
        with open(filename) as fp:
            data = json.load(fp)
        if not isinstance(data, Mapping):
            raise ConfigLoadError('task JSON must be an object, not %s' % type(data).__name__,
                                  source=filename)
        kw.setdefault('source', filename)
        return ThermosTaskWrapper(Task(_filter_to_schema(Task, data)), **kw)


class ThermosTaskValidator:
    """Checks that a task can actually be run: every failure is an `InvalidTaskError`."""

    InvalidTaskError = InvalidTaskError

    DUMMY_TASK_ID = 'dummy_task_id'
    DUMMY_USER = 'dummy_user'
    DUMMY_PORT_BASE = 30000

    @classmethod
    def assert_valid_task(cls, task: Task, source: str | None = None) -> None:
        cls.assert_typecheck(task, source=source)
        cls.assert_has_processes(task, source=source)
        cls.assert_valid_names(task, source=source)
        cls.assert_valid_backoff(task, source=source)
        cls.assert_valid_plan(task, source=source)
        cls.assert_all_refs_bound(task, source=source)

    @classmethod
    def assert_typecheck(cls, task: Task, source: str | None = None) -> None:
        error = _type_error(task, source)
        if error is not None:
            raise error

    @classmethod
    def assert_has_processes(cls, task: Task, source: str | None = None) -> None:
        """A task runs at least one process.

        Fixes an Aurora bug: a task without processes crashed the planner with a TypeError
        (and an empty list made a task that "succeeded" having run nothing).
        """
        if _task_processes(task):
            return
        context = _error_context(task, source)
        fix = 'processes = [Process(name = ..., cmdline = ...)]'
        if context['unnamed_task']:
            raise InvalidTaskError('has no processes and no name (add at least one process, %s, and '
                                   'set name = ...)' % fix, **context)
        raise InvalidTaskError('has no processes (add at least one: %s)' % fix, **context)

    @classmethod
    def assert_valid_names(cls, task: Task, source: str | None = None) -> None:
        context = _error_context(task, source)
        seen: set[str] = set()
        for index, process in enumerate(_task_processes(task)):
            name = _process_name(process)
            if name is None:
                raise InvalidTaskError('name is required but not set', **context,
                                       **_process_context(process, index))
            try:
                ThermosProcessWrapper.assert_valid_process_name(name)
            except ThermosProcessWrapper.InvalidProcess as e:
                raise InvalidTaskError(e.problem, process=e.process, **context) from None
            if name in seen:
                raise InvalidTaskError(
                    'duplicate process name (process names must be unique within a task)',
                    process=name, **context)
            seen.add(name)

    @classmethod
    def assert_valid_backoff(cls, task: Task, source: str | None = None) -> None:
        """Backoff settings are checked by the same policy object the planner will build."""
        context = _error_context(task, source)
        for index, process in enumerate(_task_processes(task)):
            backoff = _field(process, 'backoff')
            if backoff is Empty:
                continue
            try:
                interpolated, _ = backoff.interpolate()
                BackoffPolicy.from_config(interpolated)
            except ValueError as e:
                raise InvalidTaskError('%s (fix the backoff settings)' % e, **context,
                                       **_process_context(process, index)) from None

    @classmethod
    def assert_valid_plan(cls, task: Task, source: str | None = None) -> None:
        """Both the regular and the finalizing schedule must be buildable by the planner."""
        try:
            view: Any = PlainStruct.of(task)  # plain data: no re-interpolation per accessor call
        except Exception:  # noqa: BLE001 - a value pystachio cannot render yet: use the task itself
            view = task
        try:
            TaskPlanner(view, process_filter=lambda process: not process.final().get())
            TaskPlanner(view, process_filter=lambda process: bool(process.final().get()))
        except InvalidSchedule as e:
            error = _diagnose_plan(task, source) or InvalidTaskError(
                'cannot be scheduled: %s' % ' '.join(str(e).split()), **_error_context(task, source))
            raise error from None

    @classmethod
    def dummy_context(cls, ports: Iterable[str]) -> ThermosContext:
        """What the runner will bind, with placeholder values, to find refs nothing will bind."""
        return ThermosContext(
            task_id=cls.DUMMY_TASK_ID,
            user=cls.DUMMY_USER,
            ports={name: cls.DUMMY_PORT_BASE + offset for offset, name in enumerate(sorted(ports))})

    @classmethod
    def assert_all_refs_bound(cls, task: Task, source: str | None = None) -> None:
        context = _error_context(task, source)
        ports = ThermosTaskWrapper(task, strict=False, source=source).ports()
        bound = task.bind(thermos=cls.dummy_context(ports))

        def problem(refs: list[Ref]) -> str:
            if all(ref.address().startswith('thermos.') for ref in refs):
                return ('unknown launch variable %s (the runner fills in only {{thermos.ports[NAME]}}, '
                        '{{thermos.task_id}} and {{thermos.user}})' % _refs_text(refs))
            return ('unbound template variable %s (%s; only {{thermos.ports[NAME]}}, '
                    '{{thermos.task_id}} and {{thermos.user}} are filled in at launch, and template '
                    'variables cannot be nested)' % (_refs_text(refs), _bind_hint(refs)))

        _, refs = bound.interpolate()
        if not refs:
            return  # the common case: one walk, no per-process interpolation
        for index, process in enumerate(_task_processes(bound)):
            _, process_refs = process.interpolate()
            if process_refs:
                raise InvalidTaskError(problem(process_refs), **context, **_process_context(process, index))
        if not _task_processes(task) and _task_name(bound) is None:
            raise InvalidTaskError('has no processes and no name (add a process, or set name=...)',
                                   source=source, unnamed_task=True)
        raise InvalidTaskError(problem(refs), **context)

    @classmethod
    def assert_valid_ports(cls, task: Task, portmap: Mapping[str, int],
                           source: str | None = None) -> None:
        """Every port the task refers to must be in ``portmap``."""
        context = _error_context(task, source)
        needed = ThermosTaskWrapper(task, strict=False, source=source).ports()
        if needed <= set(portmap):
            return  # per process only to name the one that needs a missing port
        for index, process in enumerate(_task_processes(task)):
            for port in sorted(ThermosProcessWrapper(process).ports()):
                if port not in portmap:
                    raise InvalidTaskError(
                        "needs port '%s', which is not bound (pass -P %s:PORT)" % (port, port),
                        **context, **_process_context(process, index))
        for port in sorted(needed):
            if port not in portmap:
                raise InvalidTaskError(
                    "needs port '%s', which is not bound (pass -P %s:PORT)" % (port, port), **context)

    @classmethod
    def assert_same_task(cls, spec: Any, task: Task) -> None:
        """A task id already on disk must be relaunched with the same task, never a different one."""
        active_task = spec.given(state='active').getpath('task_path')
        if not os.path.exists(active_task):
            return
        on_disk = ThermosTaskWrapper.from_file(active_task)
        if on_disk is None:
            raise InvalidTaskError(
                'the task recorded for this task id cannot be read (remove the file or use a new '
                'task id)', source=active_task)
        if on_disk.task != task:
            raise InvalidTaskError(
                'differs from the task already recorded for this task id (use a new task id, or '
                'launch the identical task)', source=active_task, task=_task_name(task),
                unnamed_task=_task_name(task) is None)


def _order_label(names: list[str]) -> str:
    return 'order(%s)' % ', '.join(names)


def _find_cycle(dependencies: Mapping[str, set[str]]) -> list[str] | None:
    """One dependency cycle as a list of names (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for before in sorted(dependencies.get(node, ())):
            if state.get(before) == 1:
                cycle = path[path.index(before):] + [before]
                return list(reversed(cycle))
            if before not in state:
                found = visit(before)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(dependencies):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _diagnose_plan(task: Task, source: str | None) -> InvalidTaskError | None:
    """Explain, one constraint at a time, why the planner cannot schedule ``task``.

    Mirrors the planner's rules (an order list must be non-empty, name only processes of this task
    and only regular or only final ones; nothing may follow a daemon; a non-ephemeral process may
    not follow an ephemeral one; no cycles) so the message names the constraint at fault.
    """
    context = _error_context(task, source)
    interpolated, _ = task.interpolate()
    kinds = {}
    for process in interpolated.processes():
        kinds[process.name().get()] = (
            bool(process.final().get()), bool(process.daemon().get()),
            bool(process.ephemeral().get()))
    dependencies: dict[str, set[str]] = {}
    constraints = interpolated.constraints() if interpolated.has_constraints() else []
    for constraint in constraints:
        names = [str(name) for name in constraint.order().get()]
        label = _order_label(names)
        if not names:
            return InvalidTaskError('empty order list (list the processes to run in order, or remove it)',
                                    constraint=label, **context)
        unknown = [name for name in names if name not in kinds]
        if unknown:
            if len(unknown) == len(names):
                continue  # the planner ignores orders that name none of the task's processes
            return InvalidTaskError(
                "names unknown process '%s' (define it in this task, or remove it from the order)"
                % unknown[0], constraint=label, **context)
        finals = [name for name in names if kinds[name][0]]
        regulars = [name for name in names if not kinds[name][0]]
        if finals and regulars:
            return InvalidTaskError(
                "mixes final process '%s' with regular process '%s' (finalizers always run after "
                "all regular processes; order them in separate constraints)" % (finals[0], regulars[0]),
                constraint=label, **context)
        for before, after in zip(names, names[1:], strict=False):
            if kinds[before][1]:
                return InvalidTaskError(
                    "orders process '%s' after daemon process '%s', which never finishes (remove the "
                    "order, or make '%s' not a daemon)" % (after, before, before),
                    constraint=label, **context)
            if kinds[before][2] and not kinds[after][2]:
                return InvalidTaskError(
                    "orders non-ephemeral process '%s' after ephemeral process '%s', which may never "
                    "finish (make '%s' ephemeral too, or remove the order)" % (after, before, after),
                    constraint=label, **context)
            dependencies.setdefault(after, set()).add(before)
    cycle = _find_cycle(dependencies)
    if cycle is not None:
        return InvalidTaskError(
            'order constraints form a cycle %s (remove one of these orderings)'
            % ' -> '.join("'%s'" % name for name in cycle), **context)
    return None


# --------------------------------------------------------------------------------------------
# Executing .thermos files


def _rewrite_legacy_imports(text: str) -> str:
    return _LEGACY_IMPORT_RE.sub(r'\1thermos.config', text)


class _ConfigRun:
    """Executes one ``.thermos`` file and its includes in a shared namespace, as pystachio does."""

    def __init__(self, schema: str, read_root: Any) -> None:
        self.environment: dict[str, Any] = {}
        self.exported: list[tuple[Task, str | None]] = []
        self.loadables: dict[str, str] = {}
        self.files: list[str] = []  # every file compiled so far, to find error lines in tracebacks
        self._stack: list[str] = []
        self._read = read_root
        exec(compile(schema, '<thermos schema>', 'exec'), self.environment)
        self.environment['include'] = self.include
        self.environment['export'] = self.export

    def run(self, display_name: str, key_name: str) -> None:
        self._execute(display_name, '', key_name)

    def _execute(self, display_name: str, from_name: str, include_name: str) -> None:
        if os.path.normpath(display_name) in map(os.path.normpath, self._stack):
            chain = ' -> '.join(self._stack + [display_name])
            raise ConfigLoadError('include cycle %s (remove one of these include() calls)' % chain,
                                  source=self._stack[-1])
        text = self._read(display_name, from_name, include_name)
        self.loadables['\0'.join([from_name, include_name])] = text
        self.files.append(display_name)
        code = compile(_rewrite_legacy_imports(text), display_name, 'exec')
        self._stack.append(display_name)
        try:
            exec(code, self.environment)
        finally:
            self._stack.pop()

    def include(self, filename: str) -> None:
        """``include('common.thermos')``: run another file, relative to the including one."""
        if not self._stack:
            raise ConfigLoadError('include() may only be called while a config is loading')
        parent = self._stack[-1]
        self._execute(os.path.join(os.path.dirname(parent), filename), parent, filename)

    def export(self, task: Any) -> None:
        """``export(task)``: make a Task (or a dict of Task fields) loadable."""
        if isinstance(task, Mapping):
            task = Task(dict(task))
        if not isinstance(task, Task):
            raise TypeError('export() takes a Task or a dict, not %s' % type(task).__name__)
        self.exported.append((task, self._stack[-1] if self._stack else None))


def _innermost_config_frame(exc: BaseException, config_files: Iterable[str]) -> tuple[str, int] | None:
    files = set(config_files)
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename in files and frame.lineno is not None:
            found = (frame.filename, frame.lineno)
    return found


def _exception_text(exc: BaseException, environment: Mapping[str, Any] | None = None) -> str:
    text = ' '.join(str(exc).split())
    if isinstance(exc, NameError) and environment is not None and getattr(exc, 'name', None):
        close = difflib.get_close_matches(exc.name, [k for k in environment if not k.startswith('__')], n=1)
        if close:
            text += " (did you mean '%s'?)" % close[0]
    if isinstance(exc, AttributeError) and text.startswith('Unknown schema attribute '):
        return "unknown field '%s' (check its spelling against thermos.config.schema)" % (
            text[len('Unknown schema attribute '):])
    return '%s: %s' % (type(exc).__name__, text) if text else type(exc).__name__


class ThermosConfigLoader:
    """The tasks a ``.thermos`` file exports, or the task in a JSON file."""

    SCHEMA = (
        'from pystachio import *\n'
        'from thermos.config.schema import *\n'
    )

    def __init__(self, exported_tasks: Iterable[ThermosTaskWrapper] | None = None) -> None:
        self._exported_tasks = list(exported_tasks or [])
        self.load_error: ConfigError | None = None  # why load_json found no task, if it did not
        self.loadables: dict[str, str] = {}

    def add_task(self, task: ThermosTaskWrapper) -> None:
        self._exported_tasks.append(task)

    def tasks(self) -> list[ThermosTaskWrapper]:
        return self._exported_tasks

    def __iter__(self) -> Iterator[ThermosTaskWrapper]:
        return iter(self._exported_tasks)

    @classmethod
    def load(cls, loadable: Any, **kw: Any) -> ThermosConfigLoader:
        """Execute a config: a file path, an open file, or a pystachio loadables map.

        ``kw`` goes to each ThermosTaskWrapper (``bindings=[...]``, ``strict=False``).
        """
        run = cls._prepare(loadable)
        try:
            cls._start(run, loadable)
        except ConfigError as e:
            location = _innermost_config_frame(e, run.files)
            if e.line is None and location is not None:  # e.g. a bad include(): point at the call
                e.source, e.line = location
            raise
        except SyntaxError as e:
            raise ConfigLoadError('SyntaxError: %s' % e.msg, source=e.filename, line=e.lineno) from None
        except OSError as e:
            location = _innermost_config_frame(e, run.files)
            problem = '%s: %s' % (e.filename, e.strerror) if e.filename else str(e)
            error_class = ConfigNotFound if isinstance(e, FileNotFoundError) else ConfigLoadError
            if location is None:
                raise error_class(e.strerror or str(e), source=e.filename) from None
            raise error_class(problem, source=location[0], line=location[1]) from None
        except Exception as e:
            location = _innermost_config_frame(e, run.files)
            raise ConfigLoadError(_exception_text(e, run.environment),
                                  source=location[0] if location else None,
                                  line=location[1] if location else None) from None
        loader = cls()
        loader.loadables = dict(run.loadables)
        for task, source in run.exported:
            loader.add_task(ThermosTaskWrapper(task, **dict(kw, source=kw.get('source', source))))
        return loader

    @classmethod
    def _prepare(cls, loadable: Any) -> _ConfigRun:
        if isinstance(loadable, Mapping):
            def read(display: str, from_name: str, include_name: str) -> str:
                key = '\0'.join([from_name, include_name])
                if key not in loadable:
                    raise FileNotFoundError(2, 'not in the loadables map', display)
                return loadable[key]
        elif hasattr(loadable, 'read') and callable(loadable.read):
            def read(display: str, from_name: str, include_name: str) -> str:
                if from_name:
                    raise ConfigLoadError('include() is not available when loading from an open file',
                                          source=from_name)
                text = loadable.read()
                return text.decode() if isinstance(text, bytes) else text
        else:
            def read(display: str, from_name: str, include_name: str) -> str:
                with open(display) as fp:
                    return fp.read()
        return _ConfigRun(cls.SCHEMA, read)

    @classmethod
    def _start(cls, run: _ConfigRun, loadable: Any) -> None:
        if isinstance(loadable, Mapping):
            roots = [key.split('\0', 1)[1] for key in loadable if key.split('\0', 1)[0] == '']
            if len(roots) != 1:
                raise ConfigLoadError('the loadables map must have exactly one root file, found %d'
                                      % len(roots))
            run.run(roots[0], roots[0])
        elif hasattr(loadable, 'read') and callable(loadable.read):
            name = str(getattr(loadable, 'name', '<config>'))
            run.run(name, name)
        else:
            path = os.fspath(loadable)
            if not os.path.isfile(path):
                raise ConfigNotFound('no such config file (check the path)', source=path)
            run.run(path, path)

    @classmethod
    def load_json(cls, filename: str, **kw: Any) -> ThermosConfigLoader:
        """The task in a JSON file, validated; no tasks (and ``load_error`` set) if unreadable."""
        loader = cls()
        try:
            wrapper = ThermosTaskWrapper._from_file(filename, **kw)
        except ConfigError as e:
            loader.load_error = e.located(filename)
            if isinstance(e, InvalidTaskError):
                raise
            return loader
        except (OSError, ValueError) as e:
            loader.load_error = ConfigLoadError(describe_config_error(e, source=filename))
            return loader
        except Exception as e:
            loader.load_error = ConfigLoadError(_exception_text(e), source=filename)
            return loader
        ThermosTaskValidator.assert_valid_task(wrapper.task, source=wrapper.source)
        loader.add_task(wrapper)
        return loader


# --------------------------------------------------------------------------------------------


def describe_config_error(exc: BaseException, source: str | None = None) -> str:
    """One line for any error met while loading or validating a config, fit for an end user.

    ``source`` names the file being loaded, for exceptions that do not know it themselves.
    """
    if isinstance(exc, ConfigError):
        if exc.source is None and source is not None:
            return '%s: %s' % (source, exc) if exc.line is None else str(
                ConfigError(exc.problem, source=source, line=exc.line, task=exc.task,
                            process=exc.process, process_index=exc.process_index,
                            constraint=exc.constraint, unnamed_task=exc.unnamed_task))
        return str(exc)
    if isinstance(exc, SyntaxError):
        where = exc.filename or source or '<config>'
        return '%s:%s: SyntaxError: %s' % (where, exc.lineno, exc.msg) if exc.lineno else (
            '%s: SyntaxError: %s' % (where, exc.msg))
    if isinstance(exc, json.JSONDecodeError):
        return '%s:%d: invalid JSON: %s (column %d)' % (source or '<json>', exc.lineno, exc.msg,
                                                       exc.colno)
    if isinstance(exc, OSError):
        where = exc.filename or source
        reason = exc.strerror or ' '.join(str(exc).split())
        return '%s: %s' % (where, reason) if where else reason
    text = _exception_text(exc)
    if isinstance(exc, InvalidSchedule):
        text = 'cannot be scheduled: %s' % ' '.join(str(exc).split())
    if isinstance(exc, Config.Error):
        text = ' '.join(str(exc).split())
    return '%s: %s' % (source, text) if source else text
