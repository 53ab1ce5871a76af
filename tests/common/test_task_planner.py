"""TaskPlanner: Aurora's scheduling rules over a Thermos Task (spec §4.2-4.3, §12 test_task_planner.py).

Backoff on top of these rules is tested in test_backoff.py.
"""

import sys

import pytest

from thermos.common.planner import CappedTaskPlanner, InvalidSchedule, TaskPlanner
from thermos.config.schema import Constraint, Process, Task


class FakeClock:
    def __init__(self, now=0.0):
        self.now = now
        self.calls = 0

    def time(self):
        self.calls += 1
        return self.now


p1 = Process(name='p1', cmdline='')
p2 = Process(name='p2', cmdline='')
p3 = Process(name='p3', cmdline='')

unordered_task = Task(name='unordered', processes=[p1, p2, p3])
ordered_task = unordered_task(constraints=[Constraint(order=['p1', 'p2', 'p3'])])
empty_task = Task(name='empty', processes=[])


def planner(task, **kw):
    kw.setdefault('clock', FakeClock())
    return TaskPlanner(task, **kw)


def test_constants():
    assert TaskPlanner.INFINITY == sys.float_info.max
    assert TaskPlanner.TOTAL_RUN_LIMIT == sys.maxsize
    assert CappedTaskPlanner.TOTAL_RUN_LIMIT == 100
    assert issubclass(CappedTaskPlanner, TaskPlanner)
    assert TaskPlanner.InvalidSchedule is InvalidSchedule


def test_task_construction():
    p = planner(empty_task)
    assert p.runnable == set()
    assert p.is_complete()
    p = planner(unordered_task)
    assert p.runnable == {'p1', 'p2', 'p3'}
    assert not p.is_complete()
    p = planner(ordered_task)
    assert p.runnable == {'p1'}
    assert not p.is_complete()


def test_extract_dependencies():
    names, deps = TaskPlanner.extract_dependencies(ordered_task)
    assert names == {'p1', 'p2', 'p3'}
    assert dict(deps) == {'p2': {'p1'}, 'p3': {'p2'}}


def test_pure_ephemeral_task_is_complete_from_the_start():
    p = planner(empty_task(processes=[p1(ephemeral=True)]))
    assert p.is_complete()
    p.set_running('p1')
    assert p.is_complete()
    p.add_failure('p1')
    assert p.is_complete()
    assert p.failed == set()
    assert p.finished == {'p1'}


def test_ephemeral_failure_never_fails_the_task():
    p = planner(empty_task(processes=[p1, p2(ephemeral=True)]))
    assert not p.is_complete()
    assert p.runnable == {'p1', 'p2'}
    p.set_running('p1')
    assert not p.is_complete()
    p.add_failure('p1')
    assert p.is_complete()
    p.set_running('p2')
    assert p.is_complete()
    p.add_failure('p2')
    assert p.is_complete()
    assert p.failed == {'p1'}


def test_daemon_is_bound_by_max_failures():
    p = planner(empty_task(processes=[p1(daemon=True)]))
    p.set_running('p1')
    assert not p.is_complete()
    p.add_failure('p1')
    assert p.is_complete()

    p = planner(empty_task(processes=[p1(daemon=True, max_failures=2)]))
    p.set_running('p1')
    p.add_failure('p1')
    assert not p.is_complete()
    p.set_running('p1')
    p.add_failure('p1')
    assert p.is_complete()


def test_daemon_successes_do_not_count_as_failures():
    p = planner(empty_task(processes=[p1(daemon=True, max_failures=2)]))
    p.set_running('p1')
    p.add_failure('p1')
    p.set_running('p1')
    p.add_success('p1')
    assert not p.is_complete()
    p.set_running('p1')
    assert not p.is_complete()
    p.add_failure('p1')
    assert p.is_complete()
    assert p.failed == {'p1'}


def test_ephemeral_daemon_does_not_block_completion():
    p = planner(empty_task(processes=[p1, p2(daemon=True, ephemeral=True, max_failures=2)]))
    p.set_running('p1')
    p.set_running('p2')
    assert not p.is_complete()
    p.add_success('p1')
    assert p.is_complete()
    assert p.running == {'p2'}


def test_process_cannot_depend_upon_daemon():
    task = empty_task(processes=[p1(daemon=True), p2], constraints=[Constraint(order=['p1', 'p2'])])
    with pytest.raises(TaskPlanner.InvalidSchedule, match="'p2' may not depend upon daemon process 'p1'"):
        planner(task)
    # Not even another daemon may follow a daemon.
    with pytest.raises(InvalidSchedule, match='daemon'):
        planner(task(processes=[p1(daemon=True), p2(daemon=True)]))


def test_daemon_may_follow_a_regular_process():
    task = empty_task(processes=[p1, p2(daemon=True)], constraints=[Constraint(order=['p1', 'p2'])])
    p = planner(task)
    assert p.runnable == {'p1'}


def test_non_ephemeral_cannot_depend_upon_ephemeral():
    task = empty_task(processes=[p1(ephemeral=True), p2], constraints=[Constraint(order=['p1', 'p2'])])
    with pytest.raises(InvalidSchedule,
                       match="non-ephemeral process 'p2' may not depend upon ephemeral process 'p1'"):
        planner(task)
    # ephemeral -> ephemeral and regular -> ephemeral are fine
    planner(task(processes=[p1(ephemeral=True), p2(ephemeral=True)]))
    planner(task(processes=[p1, p2(ephemeral=True)]))


def test_empty_order_is_invalid():
    with pytest.raises(InvalidSchedule, match='empty'):
        planner(unordered_task(constraints=[Constraint(order=[])]))


def test_order_cycle_names_processes():
    task = unordered_task(constraints=[Constraint(order=['p1', 'p2']), Constraint(order=['p2', 'p1'])])
    with pytest.raises(InvalidSchedule, match='cycle among: p1, p2$'):
        planner(task)


def test_order_naming_unknown_process_is_invalid():
    with pytest.raises(InvalidSchedule, match=r'order \[p1, nope\].*\(p1\).*\(nope\)'):
        planner(unordered_task(constraints=[Constraint(order=['p1', 'nope'])]))


def test_failed_predecessor_does_not_make_process_runnable():
    task = empty_task(processes=[p1, p2], constraints=[Constraint(order=['p1', 'p2'])])
    p = planner(task)
    p.set_running('p1')
    p.add_success('p1')
    assert 'p2' in p.runnable
    assert not p.is_complete()

    p = planner(task)
    p.set_running('p1')
    p.add_failure('p1')
    assert 'p2' not in p.runnable
    assert not p.is_complete()


def test_daemon_duration():
    p = planner(empty_task(processes=[p1(daemon=True, max_failures=2, min_duration=10)]))
    assert 'p1' in p.runnable
    p.set_running('p1')
    p.add_success('p1', timestamp=5)
    assert 'p1' not in p.runnable_at(timestamp=5)
    assert 'p1' not in p.runnable_at(timestamp=10)
    assert 'p1' in p.runnable_at(timestamp=15)
    assert 'p1' in p.runnable_at(timestamp=20)
    p.set_running('p1')
    p.add_failure('p1', timestamp=10)
    assert 'p1' not in p.runnable_at(timestamp=10)
    assert 'p1' not in p.runnable_at(timestamp=15)
    assert 'p1' in p.runnable_at(timestamp=20)
    assert 'p1' in p.runnable_at(timestamp=25)
    p.set_running('p1')
    p.add_failure('p1', timestamp=15)
    for t in (15, 20, 25, 30):  # past max_failures: never again
        assert 'p1' not in p.runnable_at(timestamp=t)
    assert p.failed == {'p1'}


def test_min_wait():
    dt = p1(daemon=True, max_failures=0)
    p = planner(empty_task(processes=[dt(name='d3', min_duration=3),
                                      dt(name='d5', min_duration=5),
                                      dt(name='d7', min_duration=7)]))
    assert p.runnable_at(timestamp=0) == {'d3', 'd5', 'd7'}
    assert p.min_wait(timestamp=0) == 0

    p.set_running('d3')
    p.add_success('d3', timestamp=0)
    assert p.runnable_at(timestamp=0) == {'d5', 'd7'}
    assert p.waiting_at(timestamp=0) == {'d3'}
    assert p.get_wait('d3', timestamp=0) == pytest.approx(3)
    assert p.min_wait(timestamp=0) == 0
    assert p.min_wait(timestamp=1) == 0
    assert p.waiting_at(timestamp=3) == set()
    assert p.runnable_at(timestamp=3) == {'d3', 'd5', 'd7'}

    p.set_running('d3')
    p.set_running('d7')
    p.add_success('d7', timestamp=1)
    assert p.min_wait(timestamp=2) == 0  # d5 still runnable
    p.set_running('d5')
    assert p.min_wait(timestamp=2) == pytest.approx(6)  # d7: 7 - (2 - 1)
    p.add_success('d5', timestamp=2)
    p.add_success('d3', timestamp=2)
    assert p.min_wait(timestamp=3) == pytest.approx(2)  # d3: 3 - (3 - 2)
    assert p.runnable_at(timestamp=2) == set()
    assert p.runnable_at(timestamp=5) == {'d3'}
    assert p.runnable_at(timestamp=7) == {'d3', 'd5'}
    assert p.runnable_at(timestamp=8) == {'d3', 'd5', 'd7'}


def test_get_wait_is_zero_before_first_run_and_may_go_negative():
    p = planner(empty_task(processes=[p1(min_duration=5, max_failures=0)]))
    assert p.get_wait('p1', timestamp=100) == 0
    p.set_running('p1')
    p.add_failure('p1', timestamp=10)
    assert p.get_wait('p1', timestamp=12) == 3
    assert p.get_wait('p1', timestamp=20) == -5
    assert p.is_waiting('p1', timestamp=12)
    assert p.is_ready('p1', timestamp=15)


def test_exhausted_processes_leave_infinite_wait():
    dt = p1(max_failures=1, min_duration=1)
    p = planner(empty_task(processes=[dt(name='d1'), dt(name='d2')]))
    assert p.runnable_at(timestamp=0) == {'d1', 'd2'}
    p.set_running('d1')
    p.set_running('d2')
    assert p.runnable_at(timestamp=0) == set()
    p.add_failure('d1', timestamp=0)
    p.add_failure('d2', timestamp=0)
    assert p.runnable_at(timestamp=0) == set()
    assert p.min_wait(timestamp=0) == TaskPlanner.INFINITY

    p = planner(empty_task(processes=[dt(name='d1'), dt(name='d2')]))
    p.set_running('d1')
    p.set_failed('d1')
    assert p.runnable_at(timestamp=0) == {'d2'}
    p.set_running('d2')
    assert p.runnable_at(timestamp=0) == set()
    p.add_failure('d2', timestamp=0)
    assert p.runnable_at(timestamp=0) == set()
    assert p.min_wait(timestamp=0) == TaskPlanner.INFINITY
    assert p.failed == {'d1', 'd2'}
    assert p.is_complete()


def test_unlimited_failures_daemon_never_terminates():
    p = planner(empty_task(processes=[p1(name='d1', max_failures=0, daemon=True, min_duration=1)]))
    for _ in range(10):
        p.set_running('d1')
        assert 'd1' in p.running
        p.add_failure('d1')
        assert 'd1' not in p.running | p.failed
        p.set_running('d1')
        p.add_success('d1')
        assert 'd1' not in p.running | p.failed | p.finished


def test_unlimited_failures_regular_process_finishes_on_success():
    p = planner(empty_task(processes=[p1(name='d1', max_failures=0, min_duration=1)]))
    p.set_running('d1')
    p.add_failure('d1')
    assert 'd1' not in p.running | p.failed
    p.set_running('d1')
    p.add_success('d1')
    assert p.finished == {'d1'}
    assert p.failed == set()


def test_lost():
    dt = p1(name='d1', max_failures=2, min_duration=1)

    p = planner(empty_task(processes=[dt]))
    p.set_running('d1')
    p.add_success('d1', timestamp=0)
    assert p.min_wait(timestamp=0) == TaskPlanner.INFINITY

    p = planner(empty_task(processes=[dt]))
    p.set_running('d1')
    p.add_failure('d1', timestamp=1)
    assert p.min_wait(timestamp=1) == pytest.approx(1)
    p.set_running('d1')
    p.add_failure('d1', timestamp=3)
    assert p.min_wait(timestamp=3) == TaskPlanner.INFINITY

    p = planner(empty_task(processes=[dt]))
    p.set_running('d1')
    p.add_failure('d1', timestamp=1)
    assert p.min_wait(timestamp=1) == pytest.approx(1)
    p.set_running('d1')
    p.lost('d1', timestamp=2)
    assert p.min_wait(timestamp=2) == pytest.approx(1)  # throttled, but not a failure
    assert p.failed == set()
    p.set_running('d1')
    p.add_failure('d1', timestamp=3)
    assert p.min_wait(timestamp=3) == TaskPlanner.INFINITY
    assert p.failed == {'d1'}


def test_lost_without_timestamp_uses_clock():
    clock = FakeClock(now=50)
    p = planner(empty_task(processes=[p1(min_duration=4)]), clock=clock)
    p.set_running('p1')
    p.lost('p1')
    assert p.waiting_at(51) == {'p1'}
    clock.now = 52
    assert p.min_wait() == pytest.approx(2)
    assert p.waiting == {'p1'}
    clock.now = 54
    assert p.runnable == {'p1'}
    assert p.waiting == set()


def test_filters():
    task = empty_task(processes=[p1(name=n) for n in ('p1', 'p2', 'p3', 'f1', 'f2', 'f3')],
                      constraints=[Constraint(order=['p1', 'p2', 'p3']),
                                   Constraint(order=['f1', 'f2', 'f3'])])
    regular = planner(task, process_filter=lambda proc: proc.name().get().startswith('p'))
    assert regular.runnable == {'p1'}
    final = planner(task, process_filter=lambda proc: proc.name().get().startswith('f'))
    assert final.runnable == {'f1'}

    spanning = task(constraints=[Constraint(order=['p1', 'f1'])])
    with pytest.raises(InvalidSchedule):
        planner(spanning, process_filter=lambda proc: proc.name().get().startswith('p'))
    with pytest.raises(InvalidSchedule):
        planner(spanning, process_filter=lambda proc: proc.name().get().startswith('f'))


def test_final_filter_like_the_runner():
    task = empty_task(processes=[p1, p2(final=True), p3(final=True)],
                      constraints=[Constraint(order=['p2', 'p3'])])
    regular = planner(task, process_filter=lambda proc: proc.final().get() is False)
    final = planner(task, process_filter=lambda proc: proc.final().get() is True)
    assert regular.runnable == {'p1'}
    assert final.runnable == {'p2'}


def test_filter_must_be_callable():
    with pytest.raises(TypeError):
        TaskPlanner(unordered_task, process_filter='p1')


class ThreeRunPlanner(TaskPlanner):
    TOTAL_RUN_LIMIT = 3


def test_run_cap_counts_failures_and_losses():
    p = ThreeRunPlanner(empty_task(processes=[p1(name='d1', max_failures=100)]), clock=FakeClock(100))
    p.set_running('d1')
    p.add_failure('d1', timestamp=1)
    assert 'd1' in p.runnable
    p.set_running('d1')
    p.lost('d1', timestamp=2)
    assert 'd1' in p.runnable
    p.set_running('d1')
    p.add_failure('d1', timestamp=3)
    assert 'd1' not in p.runnable
    assert p.failed == {'d1'}


def test_run_cap_counts_daemon_successes():
    p = ThreeRunPlanner(empty_task(processes=[p1(name='d1', daemon=True, max_failures=0)]),
                        clock=FakeClock(100))
    p.set_running('d1')
    p.add_failure('d1', timestamp=1)
    p.set_running('d1')
    p.add_success('d1', timestamp=2)
    assert 'd1' in p.runnable
    p.set_running('d1')
    p.lost('d1', timestamp=3)
    assert 'd1' not in p.runnable
    assert p.failed == {'d1'}


def test_success_at_run_cap_marks_failed():
    p = ThreeRunPlanner(empty_task(processes=[p1(name='d1', max_failures=0)]), clock=FakeClock(100))
    for t in (1, 2):
        p.set_running('d1')
        p.add_failure('d1', timestamp=t)
    p.set_running('d1')
    assert not p.has_reached_run_limit('d1')
    p.add_success('d1', timestamp=3)
    assert p.has_reached_run_limit('d1')
    assert p.failed == {'d1'}
    assert p.finished == set()


def test_capped_planner_stops_a_lost_loop_at_100_runs():
    p = CappedTaskPlanner(empty_task(processes=[p1(name='d1', min_duration=0)]), clock=FakeClock(1000))
    for t in range(99):
        p.set_running('d1')
        p.lost('d1', timestamp=t)
    assert p.runnable == {'d1'}
    p.set_running('d1')
    p.lost('d1', timestamp=99)
    assert p.failed == {'d1'}


def test_timestamps_default_to_the_clock():
    clock = FakeClock(now=10)
    p = planner(empty_task(processes=[p1(daemon=True, min_duration=5)]), clock=clock)
    p.set_running('p1')
    p.add_success('p1')
    assert p.get_wait('p1', timestamp=12) == 3
    clock.now = 14
    assert p.get_wait('p1') == 1
    assert p.min_wait() == 1


def test_no_backoff_makes_no_extra_clock_calls():
    clock = FakeClock()
    p = planner(empty_task(processes=[p1]), clock=clock)
    p.set_running('p1')
    p.add_failure('p1', timestamp=3)
    assert clock.calls == 0


def test_process_attributes():
    p = planner(empty_task(processes=[p1(daemon=True, max_failures=3, min_duration=7, ephemeral=True)]))
    attrs = p.attributes('p1')
    assert (attrs.min_duration, attrs.is_daemon, attrs.max_failures, attrs.is_ephemeral) == (7, True, 3, True)
    assert attrs.backoff is None
