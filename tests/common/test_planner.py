"""Planner: the bare dependency graph (spec §4.1, §12 common/test_planner.py)."""

import pytest

from thermos.common.planner import InvalidSchedule, Planner


def test_empty_planner():
    p = Planner(set(), {})
    assert p.runnable == set()
    assert p.running == set()
    assert p.finished == set()
    assert p.failed == set()
    assert p.is_complete()


def test_unordered_processes():
    p = Planner({'p1', 'p2', 'p3'}, {})
    assert p.runnable == {'p1', 'p2', 'p3'}
    assert not p.is_complete()

    p.set_running('p2')
    assert p.runnable == {'p1', 'p3'}
    assert p.running == {'p2'}

    with pytest.raises(AssertionError):
        p.set_finished('p1')  # not running

    p.set_finished('p2')
    assert p.finished == {'p2'}
    with pytest.raises(AssertionError):
        p.reset('p2')  # finished
    assert not p.is_complete()

    for name in ('p1', 'p3'):
        p.set_running(name)
        p.set_finished(name)
    assert p.is_complete()
    assert p.runnable == set()


def test_chained_processes():
    p = Planner({'p1', 'p2', 'p3'}, {'p2': ['p1'], 'p3': ['p2']})
    assert p.runnable == {'p1'}
    with pytest.raises(AssertionError):
        p.set_running('p2')
    with pytest.raises(AssertionError):
        p.set_running('p3')
    with pytest.raises(AssertionError):
        p.reset('p1')  # not running yet

    p.set_running('p1')
    assert p.runnable == set()
    p.set_finished('p1')
    assert p.runnable == {'p2'}
    with pytest.raises(AssertionError):
        p.reset('p2')
    with pytest.raises(AssertionError):
        p.set_running('p3')

    p.set_running('p2')
    p.set_finished('p2')
    assert p.runnable == {'p3'}
    p.set_running('p3')
    p.set_finished('p3')
    assert p.is_complete()


def test_independent_processes_alongside_chain():
    p = Planner({'p1', 'p2', 'p3', 'd1', 'd2'}, {'p2': ['p1'], 'p3': ['p2']})
    assert p.runnable == {'p1', 'd1', 'd2'}
    p.set_running('d1')
    p.set_finished('d1')
    assert p.runnable == {'p1', 'd2'}


def test_failed_dependency_never_unblocks():
    p = Planner({'p1', 'p2'}, {'p2': ['p1']})
    p.set_running('p1')
    p.set_failed('p1')
    assert p.runnable == set()
    assert p.failed == {'p1'}
    assert not p.is_complete()


def test_reset_returns_process_to_runnable():
    p = Planner({'p1'}, {})
    p.set_running('p1')
    p.reset('p1')
    assert p.runnable == {'p1'}
    assert p.running == set()


def test_set_running_is_idempotent_for_a_running_process():
    p = Planner({'p1'}, {})
    p.set_running('p1')
    p.set_running('p1')
    assert p.running == {'p1'}


@pytest.mark.parametrize('setup, action', [
    (('set_running', 'set_finished'), 'set_running'),   # finished cannot run again
    (('set_running', 'set_failed'), 'set_running'),     # failed cannot run again
    (('set_running', 'set_failed'), 'set_finished'),
    (('set_running', 'set_finished'), 'set_failed'),
    (('set_running', 'set_failed'), 'reset'),
    ((), 'set_failed'),                                 # not running
])
def test_preconditions_raise_assertion_error(setup, action):
    p = Planner({'p1'}, {})
    for step in setup:
        getattr(p, step)('p1')
    with pytest.raises(AssertionError, match="'p1'"):
        getattr(p, action)('p1')


def test_complete_counts_failed_as_terminal():
    p = Planner({'p1', 'p2'}, {})
    p.set_running('p1')
    p.set_failed('p1')
    p.set_running('p2')
    p.set_finished('p2')
    assert p.is_complete()


def test_two_cycle_raises_and_names_members():
    with pytest.raises(InvalidSchedule, match='cycle among: p1, p2$'):
        Planner({'p1', 'p2'}, {'p1': ['p2'], 'p2': ['p1']})


def test_three_cycle_raises_and_names_only_the_cycle():
    # p4 hangs off the cycle but is not part of it, and p0 is fine.
    deps = {'p1': ['p3'], 'p2': ['p1'], 'p3': ['p2'], 'p4': ['p3'], 'p1x': ['p0']}
    with pytest.raises(InvalidSchedule, match='cycle among: p1, p2, p3$'):
        Planner({'p0', 'p1', 'p2', 'p3', 'p4', 'p1x'}, deps)


def test_self_dependency_is_a_cycle():
    with pytest.raises(Planner.InvalidSchedule, match='Cycles detected.*cycle among: p1$'):
        Planner({'p1'}, {'p1': ['p1']})


def test_unknown_dependency_is_reported_as_such():
    with pytest.raises(InvalidSchedule, match="'p1' depends upon unknown processes: ghost"):
        Planner({'p1'}, {'p1': ['ghost']})
    with pytest.raises(InvalidSchedule, match='unknown processes: ghost'):
        Planner({'p1'}, {'ghost': ['p1']})


def test_returned_sets_are_copies():
    p = Planner({'p1'}, {})
    p.runnable.clear()
    p.processes.clear()
    p.running.add('p9')
    assert p.runnable == {'p1'}
    assert p.processes == {'p1'}
    assert p.running == set()
