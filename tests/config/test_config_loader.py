"""Loading tasks from .thermos files and task JSON, as the CLI and runner do."""

import io
import json
import textwrap

import pytest
from pystachio import Ref
from pystachio.config import Config

from thermos.config.loader import (
    ConfigLoadError,
    ConfigNotFound,
    InvalidTaskError,
    PortExtractor,
    ThermosConfigLoader,
    ThermosTaskValidator,
    ThermosTaskWrapper,
    describe_config_error,
)
from thermos.config.schema import Process, RestartBackoff, Task, ThermosContext


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


HELLO = """\
    hello = Process(
        name='hello',
        cmdline='echo {{thermos.ports[http]}} {{thermos.task_id}} {{thermos.user}} {{greeting}}')
    world = Process(name='world', cmdline='echo world')
    export(Task(name='hello', processes=[hello, world], constraints=order(hello, world),
                resources=Resources(cpu=1, ram=64 * MB, disk=64 * MB)))
"""


@pytest.fixture
def hello_file(tmp_path):
    return write(tmp_path / 'hello.thermos', HELLO)


def simple_task(**kw):
    return Task(name='t', processes=[Process(name='p', cmdline='echo hi')], **kw)


# ---------------------------------------------------------------------------- .thermos files

def test_load_exports_tasks_with_schema_and_helpers_in_scope(hello_file):
    tasks = ThermosConfigLoader.load(hello_file).tasks()
    assert len(tasks) == 1
    task = tasks[0].task
    assert task.name().get() == 'hello'
    assert [p.name().get() for p in task.processes()] == ['hello', 'world']
    assert tasks[0].source == hello_file


def test_include_is_relative_to_the_including_file(tmp_path, monkeypatch):
    write(tmp_path / 'lib' / 'procs.thermos', """\
        include('more/extra.thermos')
        world = Process(name='world', cmdline='echo ' + GREETING)
    """)
    write(tmp_path / 'lib' / 'more' / 'extra.thermos', "GREETING = 'hi'\n")
    main = write(tmp_path / 'jobs' / 'main.thermos', """\
        include('../lib/procs.thermos')
        export(Task(name='main', processes=[world]))
    """)
    monkeypatch.chdir('/')
    (task,) = ThermosConfigLoader.load(main).tasks()
    assert task.task.processes()[0].cmdline().get() == 'echo hi'


def test_export_accepts_a_dict(tmp_path):
    path = write(tmp_path / 'd.thermos', """\
        export({'name': 'd', 'processes': [{'name': 'p', 'cmdline': 'true'}]})
    """)
    (task,) = ThermosConfigLoader.load(path).tasks()
    assert isinstance(task.task, Task)
    assert task.task.name().get() == 'd'


def test_aurora_era_import_line_still_loads(tmp_path):
    path = write(tmp_path / 'old.thermos', """\
        from apache.thermos.config.schema import *
        import apache.thermos.config.schema_helpers as helpers
        p = Process(name='p', cmdline='true')
        export(helpers.SequentialTask(name='old', processes=[p]))
    """)
    (task,) = ThermosConfigLoader.load(path).tasks()
    assert task.task.name().get() == 'old'


def test_empty_config_has_no_tasks(tmp_path):
    assert ThermosConfigLoader.load(write(tmp_path / 'empty.thermos', '')).tasks() == []


def test_several_exports_give_several_tasks_in_order(tmp_path):
    path = write(tmp_path / 'two.thermos', """\
        p = Process(name='p', cmdline='true')
        export(Task(name='first', processes=[p]))
        export(Task(name='second', processes=[p]))
    """)
    names = [t.task.name().get() for t in ThermosConfigLoader.load(path).tasks()]
    assert names == ['first', 'second']


def test_load_from_an_open_file_and_from_a_loadables_map(hello_file):
    with open(hello_file) as fp:
        (from_fp,) = ThermosConfigLoader.load(fp).tasks()
    loader = ThermosConfigLoader.load(hello_file)
    (from_map,) = ThermosConfigLoader.load(loader.loadables).tasks()
    assert from_fp.task == loader.tasks()[0].task == from_map.task


def test_bindings_fill_template_variables(hello_file):
    (task,) = ThermosConfigLoader.load(hello_file, bindings=[{'greeting': 'hi'}]).tasks()
    bound = task.task.bind(thermos=ThermosContext(ports={'http': 8080}, task_id='tid-1', user='alice'))
    assert bound.processes()[0].cmdline().get() == 'echo 8080 tid-1 alice hi'


def test_bindings_from_the_command_line_parser_work(hello_file):
    (task,) = ThermosConfigLoader.load(hello_file, bindings=[{Ref.from_address('greeting'): 'yo'}]).tasks()
    assert '{{greeting}}' not in task.task.processes()[0].cmdline().get()
    assert ' yo' in task.task.processes()[0].cmdline().get()


def test_ports_lists_named_ports(hello_file):
    (task,) = ThermosConfigLoader.load(hello_file).tasks()
    assert task.ports() == {'http'}
    assert ThermosTaskWrapper(simple_task()).ports() == set()


def test_port_extractor_rejects_dotted_port_refs():
    assert PortExtractor.extract(Process(name='p', cmdline='{{thermos.ports[a]}} {{x}}')) == ['a']
    with pytest.raises(PortExtractor.InvalidPorts) as info:
        PortExtractor.extract(Process(name='p', cmdline='{{thermos.ports.http}}'))
    assert str(info.value) == (
        'bad port reference {{thermos.ports.http}} (write it as {{thermos.ports[http]}})')


def test_wrapper_ports_names_the_process_with_a_bad_port_ref():
    task = Task(name='t', processes=[Process(name='web', cmdline='serve {{thermos.ports.http}}')])
    with pytest.raises(InvalidTaskError) as info:
        ThermosTaskWrapper(task, source='web.thermos').ports()
    assert str(info.value) == (
        "web.thermos: task 't': process 'web': bad port reference {{thermos.ports.http}} "
        "(write it as {{thermos.ports[http]}})")


def test_missing_ports_are_reported_by_name(hello_file):
    (task,) = ThermosConfigLoader.load(hello_file).tasks()
    ThermosTaskValidator.assert_valid_ports(task.task, {'http': 80})
    with pytest.raises(InvalidTaskError) as info:
        ThermosTaskValidator.assert_valid_ports(task.task, {'https': 443}, source=hello_file)
    assert str(info.value) == (
        "%s: task 'hello': process 'hello': needs port 'http', which is not bound "
        "(pass -P http:PORT)" % hello_file)


def test_strict_load_rejects_a_task_that_does_not_typecheck(tmp_path):
    path = write(tmp_path / 'typo.thermos', """\
        export(Task(name='t', processes=[Process(name='p', cmdline='true', max_failures='lots')]))
    """)
    with pytest.raises(InvalidTaskError) as info:
        ThermosConfigLoader.load(path)
    assert str(info.value) == (
        "%s: task 't': process 'p': max_failures must be an integer, got 'lots'" % path)
    (loose,) = ThermosConfigLoader.load(path, strict=False).tasks()
    assert loose.task.name().get() == 't'


def test_the_exporting_file_is_the_source(tmp_path):
    write(tmp_path / 'lib.thermos', """\
        export(Task(name='t', processes=[Process(name='p')]))
    """)
    main = write(tmp_path / 'main.thermos', "include('lib.thermos')\n")
    with pytest.raises(InvalidTaskError) as info:
        ThermosConfigLoader.load(main)
    assert str(info.value) == (
        "%s: task 't': process 'p': cmdline is required but not set" % str(tmp_path / 'lib.thermos'))


# ---------------------------------------------------------------------------- load errors

def load_error(tmp_path, name, text):
    path = write(tmp_path / name, text)
    with pytest.raises(ConfigLoadError) as info:
        ThermosConfigLoader.load(path)
    return path, info.value


def test_syntax_error_is_one_line_with_file_and_line(tmp_path):
    path, error = load_error(tmp_path, 'bad.thermos', """\
        p = Process(name='a', cmdline='x')

        t = Task(name='hello', processes=[p]
    """)
    assert str(error) == "%s:3: SyntaxError: '(' was never closed" % path
    assert (error.source, error.line) == (path, 3)
    assert isinstance(error, Config.InvalidConfigError)  # what Aurora-era callers catch


def test_exception_while_executing_names_the_line_and_suggests_a_name(tmp_path):
    path, error = load_error(tmp_path, 'typo.thermos', """\
        x = 1
        p = Proces(name='a', cmdline='x')
    """)
    assert str(error) == "%s:2: NameError: name 'Proces' is not defined (did you mean 'Process'?)" % path


def test_unknown_field_in_an_included_file_names_that_file(tmp_path):
    lib = write(tmp_path / 'common' / 'bad.thermos', """\
        ok = 1
        p = Process(name='a', cmdline='x', frobnicate=3)
    """)
    _, error = load_error(tmp_path, 'main.thermos', "include('common/bad.thermos')\n")
    assert str(error) == (
        "%s:2: unknown field 'frobnicate' (check its spelling against thermos.config.schema)" % lib)


def test_helper_value_errors_point_at_the_calling_line(tmp_path):
    path, error = load_error(tmp_path, 'order.thermos', """\
        p = Process(name='a', cmdline='x')
        c = order(None)
    """)
    assert str(error) == (
        '%s:2: ValueError: order() takes Process objects or process names, not None' % path)


def test_export_of_something_else_is_rejected(tmp_path):
    path, error = load_error(tmp_path, 'export.thermos', 'export(3)\n')
    assert str(error) == '%s:1: TypeError: export() takes a Task or a dict, not int' % path


def test_missing_include_points_at_the_include_call(tmp_path):
    path, error = load_error(tmp_path, 'main.thermos', "x = 1\ninclude('nope.thermos')\n")
    assert isinstance(error, ConfigNotFound)
    assert str(error) == '%s:2: %s: No such file or directory' % (path, tmp_path / 'nope.thermos')


def test_include_cycle_is_reported_not_recursed(tmp_path):
    a = write(tmp_path / 'a.thermos', "include('b.thermos')\n")
    b = write(tmp_path / 'b.thermos', "\ninclude('a.thermos')\n")
    with pytest.raises(ConfigLoadError) as info:
        ThermosConfigLoader.load(a)
    assert str(info.value) == (
        '%s:2: include cycle %s -> %s -> %s (remove one of these include() calls)' % (b, a, b, a))


def test_include_cycle_through_a_different_spelling_of_the_path(tmp_path):
    a = write(tmp_path / 'sub' / 'a.thermos', "include('../sub/a.thermos')\n")
    with pytest.raises(ConfigLoadError) as info:
        ThermosConfigLoader.load(a)
    assert str(info.value).startswith('%s:1: include cycle ' % a)


def test_missing_config_file(tmp_path):
    path = str(tmp_path / 'absent.thermos')
    with pytest.raises(ConfigNotFound) as info:
        ThermosConfigLoader.load(path)
    assert str(info.value) == '%s: no such config file (check the path)' % path
    assert isinstance(info.value, Config.NotFound)


def test_include_is_refused_for_open_files():
    with pytest.raises(ConfigLoadError) as info:
        ThermosConfigLoader.load(io.StringIO("\ninclude('x.thermos')\n"))
    assert str(info.value) == '<config>:2: include() is not available when loading from an open file'


# ---------------------------------------------------------------------------- JSON

def test_to_file_then_load_json_gives_the_same_task(tmp_path, hello_file):
    (task,) = ThermosConfigLoader.load(hello_file, bindings=[{'greeting': 'hi'}]).tasks()
    bound = ThermosTaskWrapper(task.task.bind(
        thermos=ThermosContext(ports={'http': 8080}, task_id='tid', user='alice')))
    target = str(tmp_path / 'tasks' / 'active' / 'tid')
    bound.to_file(target)
    (reloaded,) = ThermosConfigLoader.load_json(target).tasks()
    assert reloaded.task == bound.task
    assert reloaded.source == target
    on_disk = json.loads(open(target).read())
    assert on_disk['name'] == 'hello'
    assert on_disk['processes'][0]['cmdline'] == 'echo 8080 tid alice hi'
    assert sorted(p.name for p in (tmp_path / 'tasks' / 'active').iterdir()) == ['tid']  # no temp left


def test_to_json_is_plain_task_json():
    assert json.loads(ThermosTaskWrapper(simple_task()).to_json()) == {
        'name': 't', 'processes': [{'name': 'p', 'cmdline': 'echo hi', 'max_failures': 1,
                                    'daemon': False, 'ephemeral': False, 'min_duration': 5,
                                    'final': False}],
        'constraints': [], 'max_failures': 1, 'max_concurrency': 0, 'finalization_wait': 30}


def test_backoff_round_trips_through_json(tmp_path):
    task = Task(name='t', processes=[Process(name='p', cmdline='x', backoff=RestartBackoff(initial=2))])
    ThermosTaskWrapper(task).to_file(str(tmp_path / 'task.json'))
    (loaded,) = ThermosConfigLoader.load_json(str(tmp_path / 'task.json')).tasks()
    backoff = loaded.task.processes()[0].backoff()
    assert (backoff.initial().get(), backoff.maximum().get()) == (2.0, 300.0)


@pytest.mark.parametrize('content', ['', 'not json', '[1, 2]', '{"name": 5, "processes": 3}'])
def test_from_file_on_garbage_returns_none(tmp_path, content):
    path = tmp_path / 'garbage.json'
    path.write_text(content)
    assert ThermosTaskWrapper.from_file(str(path)) is None


def test_from_file_on_a_missing_file_returns_none(tmp_path):
    assert ThermosTaskWrapper.from_file(str(tmp_path / 'nothing')) is None


def test_from_file_drops_unknown_keys_at_every_depth(tmp_path):
    data = json.loads(ThermosTaskWrapper(simple_task()).to_json())
    data['future_task_field'] = 1
    data['processes'][0]['future_process_field'] = {'x': 1}
    path = tmp_path / 'newer.json'
    path.write_text(json.dumps(data))
    loaded = ThermosTaskWrapper.from_file(str(path))
    assert loaded is not None and loaded.task == simple_task()


def test_load_json_of_an_unreadable_file_has_no_tasks_and_says_why(tmp_path):
    path = tmp_path / 'bad.json'
    path.write_text('{"name": ')
    loader = ThermosConfigLoader.load_json(str(path))
    assert loader.tasks() == []
    assert str(loader.load_error) == '%s:1: invalid JSON: Expecting value (column 10)' % path
    missing = ThermosConfigLoader.load_json(str(tmp_path / 'missing.json'))
    assert missing.tasks() == []
    assert str(missing.load_error) == '%s: No such file or directory' % (tmp_path / 'missing.json')


def test_load_json_validates(tmp_path):
    task = Task(name='t', processes=[Process(name='a/b', cmdline='true')])
    path = str(tmp_path / 'task.json')
    ThermosTaskWrapper(task).to_file(path)
    with pytest.raises(InvalidTaskError) as info:
        ThermosConfigLoader.load_json(path)
    assert str(info.value) == (
        "%s: task 't': process 'a/b': invalid process name: must not contain '/' or control "
        "characters such as newlines" % path)


def test_load_json_forwards_bindings(tmp_path):
    task = Task(name='t', processes=[Process(name='p', cmdline='echo {{greeting}}')])
    path = str(tmp_path / 'task.json')
    ThermosTaskWrapper(task).to_file(path)
    (loaded,) = ThermosConfigLoader.load_json(path, bindings=[{'greeting': 'hi'}]).tasks()
    assert loaded.task.processes()[0].cmdline().get() == 'echo hi'


# ---------------------------------------------------------------------------- same task

class FakePath:
    def __init__(self, path):
        self._path = path

    def given(self, **kw):
        assert kw == {'state': 'active'}
        return self

    def getpath(self, name):
        assert name == 'task_path'
        return self._path


def test_assert_same_task(tmp_path):
    path = str(tmp_path / 'active' / 'tid')
    spec = FakePath(path)
    ThermosTaskValidator.assert_same_task(spec, simple_task())  # nothing on disk yet
    ThermosTaskWrapper(simple_task()).to_file(path)
    ThermosTaskValidator.assert_same_task(spec, simple_task())
    with pytest.raises(InvalidTaskError) as info:
        ThermosTaskValidator.assert_same_task(spec, simple_task(max_failures=3))
    assert str(info.value) == (
        "%s: task 't': differs from the task already recorded for this task id (use a new task id, "
        "or launch the identical task)" % path)


# ---------------------------------------------------------------------------- describe_config_error

def test_describe_config_error_is_always_one_line(tmp_path):
    assert describe_config_error(FileNotFoundError(2, 'No such file or directory', 'x.thermos')) == \
        'x.thermos: No such file or directory'
    assert describe_config_error(ValueError('first\nsecond'), source='a.json') == \
        'a.json: ValueError: first second'
    error = SyntaxError('invalid syntax', ('f.thermos', 7, 1, 'x y'))
    assert describe_config_error(error) == 'f.thermos:7: SyntaxError: invalid syntax'
    assert describe_config_error(InvalidTaskError('bad', task='t'), source='t.json') == \
        "t.json: task 't': bad"
    assert describe_config_error(ConfigLoadError('boom', line=4), source='c.thermos') == \
        'c.thermos:4: boom'
    assert describe_config_error(Config.InvalidConfigError('oops\nmore')) == 'oops more'


def test_describe_config_error_for_planner_errors():
    from thermos.common.planner import InvalidSchedule
    assert describe_config_error(InvalidSchedule('Cycles detected!')) == \
        'cannot be scheduled: Cycles detected!'


def test_config_errors_are_value_errors(tmp_path):
    path = write(tmp_path / 'x.thermos', 'export(1)\n')
    with pytest.raises(ValueError):
        ThermosConfigLoader.load(path)
    with pytest.raises(ValueError):
        ThermosTaskValidator.assert_valid_task(Task(name='t', processes=[Process(name='.p', cmdline='x')]))
