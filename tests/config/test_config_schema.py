"""The schema and composition helpers behave as Aurora configs expect."""

import json
from collections import OrderedDict

import pytest

from thermos.config.schema import (
    GB,
    KB,
    MB,
    TB,
    Constraint,
    Empty,
    List,
    Logger,
    Process,
    Resources,
    RestartBackoff,
    SequentialTask,
    SimpleTask,
    Task,
    Tasks,
    Units,
    combine_tasks,
    concat_tasks,
    java_options,
    order,
    python_options,
)


def test_units_are_binary():
    assert (KB, MB, GB, TB) == (1024, 1024**2, 1024**3, 1024**4)


def test_process_and_task_defaults_match_aurora():
    p = Process(name='p', cmdline='true')
    assert json.loads(json.dumps(p.get())) == {
        'name': 'p', 'cmdline': 'true', 'max_failures': 1, 'daemon': False, 'ephemeral': False,
        'min_duration': 5, 'final': False,
    }
    t = Task(processes=[p])
    assert t.name().get() == 'p'  # '{{processes[0].name}}'
    assert json.loads(json.dumps(t.get())) == {
        'name': '{{processes[0].name}}', 'processes': [json.loads(json.dumps(p.get()))], 'constraints': [],
        'max_failures': 1, 'max_concurrency': 0, 'finalization_wait': 30,
    }
    assert Resources(cpu=1, ram=2, disk=3).gpu().get() == 0
    logger = Logger()
    assert (logger.destination().get(), logger.mode().get()) == ('file', 'standard')
    assert dict(logger(rotate={}).rotate().get()) == {'log_size': 100 * MB, 'backups': 5}


def test_backoff_absent_serialises_like_aurora():
    task = Task(name='t', processes=[Process(name='p', cmdline='true')])
    data = json.loads(json.dumps(task.get()))
    assert 'backoff' not in data['processes'][0]
    assert task.processes()[0].backoff() is Empty


def test_backoff_present_fills_defaults():
    p = Process(name='p', cmdline='true', backoff=RestartBackoff())
    assert json.loads(json.dumps(p.get()))['backoff'] == {
        'initial': 1.0, 'maximum': 300.0, 'multiplier': 2.0, 'jitter': 0.25, 'reset_after': 600.0,
    }
    p = Process(name='p', cmdline='true', backoff={'initial': 3, 'maximum': 30})
    assert p.backoff().initial().get() == 3.0
    assert p.backoff().maximum().get() == 30.0
    assert p.backoff().multiplier().get() == 2.0


@pytest.mark.parametrize('first', ['p1', 'process'])
@pytest.mark.parametrize('second', ['p2', 'process'])
def test_order_accepts_processes_and_names(first, second):
    p1, p2 = Process(name='p1'), Process(name='p2')
    a = p1 if first == 'process' else 'p1'
    b = p2 if second == 'process' else 'p2'
    assert order(a, b) == [Constraint(order=['p1', 'p2'])]


@pytest.mark.parametrize('bad', [[Process(name='p1')], None, 3])
def test_order_rejects_other_values(bad):
    with pytest.raises(ValueError):
        order(bad)


def test_order_lists_concatenate_into_chains():
    assert order('a', 'b') + order('b', 'c') == [
        Constraint(order=['a', 'b']), Constraint(order=['b', 'c'])]


def test_resources_sum_and_max():
    zero = Resources(cpu=0, ram=0, disk=0, gpu=0)
    assert Units.resources_sum(Resources(), Resources()) == zero
    assert Units.resources_sum(Empty, Empty) == zero
    r1000 = Resources(cpu=1, ram=0, disk=0)
    r0100 = Resources(cpu=0, ram=1, disk=0)
    r0010 = Resources(cpu=0, ram=0, disk=1)
    r0001 = Resources(cpu=0, ram=0, disk=0, gpu=1)
    r1111 = Resources(cpu=1, ram=1, disk=1, gpu=1)
    assert Units.resources_sum(r1000, r0100, r0010, r0001) == r1111
    assert Units.resources_sum(r1111, r1111) == Resources(cpu=2, ram=2, disk=2, gpu=2)
    assert Units.resources_sum(r1000, Resources()) == r1000
    assert Units.resources_max(r1000, r0100, r0010, r0001) == r1111
    assert Units.resources_max([Resources(cpu=3, ram=1, disk=5), Resources(cpu=2, ram=4, disk=0)]) \
        == Resources(cpu=3, ram=4, disk=5, gpu=0)


def test_finalization_wait_helpers():
    assert Units.finalization_wait_sum(60, 45) == 105
    assert Units.finalization_wait_max(60, 45) == 60
    assert Units.finalization_wait_max() == 0


def _two_tasks():
    p1, p2, p3, p4 = (Process(name=n, cmdline='true') for n in ('p1', 'p2', 'p3', 'p4'))
    t1 = Task(name='p1p2', processes=[p1, p2], constraints=order(p1, p2),
              resources=Resources(cpu=1, ram=1, disk=0), finalization_wait=60)
    t2 = Task(name='p3p4', processes=[p3, p4], constraints=order(p3, p4),
              resources=Resources(cpu=0, ram=0, disk=1), finalization_wait=45)
    return (p1, p2, p3, p4), t1, t2


def test_combine_tasks():
    (p1, p2, p3, p4), t1, t2 = _two_tasks()
    assert combine_tasks() == Task()
    assert combine_tasks(t1) == t1
    assert combine_tasks(t2) == t2
    t3 = combine_tasks(t1, t2)
    assert t3.name() == t2.name()
    assert t3.resources() == Resources(cpu=1, ram=1, disk=1)
    assert list(t3.processes()) == [p1, p2, p3, p4]
    assert set(t3.constraints()) == set(order(p1, p2) + order(p3, p4))
    assert t3.finalization_wait().get() == 60
    assert Tasks.combine(t1, t2) == t3


def test_concat_tasks():
    (p1, p2, p3, p4), t1, t2 = _two_tasks()
    t4 = concat_tasks(t1, t2)
    assert t4.name() == t2.name()
    assert t4.resources() == Resources(cpu=1, ram=1, disk=1)
    assert list(t4.processes()) == [p1, p2, p3, p4]
    assert set(t4.constraints()) == set(
        order(p1, p2) + order(p3, p4) + order(p1, p3) + order(p1, p4) + order(p2, p3)
        + order(p2, p4))
    assert t4.finalization_wait().get() == 60 + 45
    assert concat_tasks() == Task()


def test_merging_is_deterministic():
    _, t1, t2 = _two_tasks()
    assert json.dumps(combine_tasks(t1, t2).get()) == json.dumps(combine_tasks(t1, t2).get())
    assert [p.name().get() for p in concat_tasks(t2, t1).processes()] == ['p3', 'p4', 'p1', 'p2']


def test_simple_task():
    st = SimpleTask('simple_thing', 'echo hello')
    assert isinstance(st, Task)
    assert st.name().get() == 'simple_thing'
    assert len(st.constraints().get()) == 0
    assert len(st.processes().get()) == 1
    assert st.processes().get()[0]['cmdline'] == 'echo hello'
    assert st.resources() == Resources(cpu=1.0, ram=1 * GB, disk=1 * GB)
    assert Tasks.simple('x', 'y') == SimpleTask('x', 'y')


def test_sequential_task():
    a, b, c = (Process(name=n, cmdline='true') for n in 'abc')
    t = SequentialTask(name='seq', processes=[a, b, c])
    assert t.constraints() == List(Constraint)(order(a, b, c))
    with pytest.raises(ValueError):
        Tasks.sequential(t)
    # An empty task gains no (invalid) empty order constraint.
    assert list(SequentialTask(name='empty', processes=[]).constraints().get()) == []


def test_composition_keeps_every_process():
    install = Process(name='install_thermosrc', cmdline='true')
    py3k = Process(name='setup_py3k', cmdline='true')
    ruby = Process(name='setup_ruby19', cmdline='true')
    php = Process(name='setup_php', cmdline='true')
    recipes = Tasks.combine(
        SequentialTask(processes=[install, py3k]),
        SequentialTask(processes=[install, ruby]),
        SequentialTask(processes=[install, php]))
    mine = Tasks.concat(recipes, Task(processes=[Process(name='my_process', cmdline='true')]))(
        name='my_task')
    for p in (install, py3k, ruby, php):
        assert p in mine.processes()
    assert len(mine.processes().get()) == 5  # install_thermosrc only once


def test_java_options():
    assert java_options('a', 'b', 'cow') == '-a -b -cow'
    assert java_options({'a': None, 'b': None, 'cow': None}) == '-a -b -cow'
    assert java_options({'a': None, 'b': 1, 'cow': 'foo'}) == '-a -b 1 -cow foo'
    assert java_options(a=None, b=1, cow='foo') == '-a -b 1 -cow foo'
    assert java_options('a', {'b': 1}, cow='foo') == '-a -b 1 -cow foo'


def test_python_options():
    assert python_options('a', 'b', 'cow') == '-a -b --cow'
    assert python_options({'a': None, 'b': None, 'cow': None}) == '-a -b --cow'
    assert python_options({'a': None, 'b': 1, 'cow': 'foo'}) == '-a -b 1 --cow foo'
    assert python_options(a=None, b=1, cow='foo') == '-a -b 1 --cow foo'
    assert python_options('a', {'b': 1}, cow='foo') == '-a -b 1 --cow foo'
    assert python_options(port=0) == '--port 0'
    with pytest.raises(ValueError):
        python_options(['a'])


def test_options_keep_dict_order():
    assert java_options(OrderedDict([('a', 1), ('b', 2), ('c', 3)])) == '-a 1 -b 2 -c 3'
    assert java_options(OrderedDict([('c', 3), ('b', 2), ('a', 1)])) == '-c 3 -b 2 -a 1'
    assert java_options({'c': 3, 'a': 1}) == '-c 3 -a 1'
