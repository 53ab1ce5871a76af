"""Opt-in restart backoff: the pure policy, the per-process state, and how TaskPlanner applies it."""

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thermos.common.backoff import Backoff, BackoffPolicy
from thermos.common.planner import InvalidSchedule, TaskPlanner
from thermos.config.schema import Empty, Process, RestartBackoff, Task


class FakeClock:
    def __init__(self, now=0.0):
        self.now = now

    def time(self):
        return self.now


def fixed(value):
    return lambda: value


# ---------------------------------------------------------------------------------------- policy

def test_defaults_match_the_schema():
    assert BackoffPolicy() == BackoffPolicy(initial=1.0, maximum=300.0, multiplier=2.0, jitter=0.25,
                                            reset_after=600.0)
    assert BackoffPolicy.from_config(RestartBackoff()) == BackoffPolicy()


def test_from_config():
    assert BackoffPolicy.from_config(Empty) is None
    assert BackoffPolicy.from_config(None) is None
    assert BackoffPolicy.from_config(Process(name='a', cmdline='').backoff()) is None
    cfg = RestartBackoff(initial=2, maximum=60, multiplier=3, jitter=0, reset_after=30)
    assert BackoffPolicy.from_config(cfg) == BackoffPolicy(2.0, 60.0, 3.0, 0.0, 30.0)


def test_exponential_growth():
    policy = BackoffPolicy(initial=1.0, maximum=1000.0, multiplier=2.0)
    assert [policy.base_delay(n) for n in range(0, 7)] == [0, 1, 2, 4, 8, 16, 32]
    policy = BackoffPolicy(initial=10.0, maximum=1000.0, multiplier=3.0)
    assert [policy.base_delay(n) for n in (1, 2, 3)] == [10, 30, 90]


def test_cap():
    policy = BackoffPolicy(initial=10.0, maximum=300.0, multiplier=2.0)
    assert [policy.base_delay(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    # Far past the cap the exponent overflows a float; the delay simply stays at the cap.
    assert policy.base_delay(100_000) == 300.0


def test_multiplier_one_is_a_constant_delay():
    policy = BackoffPolicy(initial=3.0, maximum=10.0, multiplier=1.0)
    assert {policy.base_delay(n) for n in range(1, 50)} == {3.0}


def test_jitter_bounds_with_fixed_draws():
    policy = BackoffPolicy(initial=8.0, maximum=100.0, jitter=0.25)
    assert policy.delay(1, fixed(0.0)) == 6.0
    assert policy.delay(1, fixed(0.5)) == 8.0
    assert policy.delay(1, fixed(1.0)) == 10.0
    # Jitter is applied after the cap so capped processes do not restart in lockstep.
    assert policy.delay(50, fixed(1.0)) == 125.0
    assert policy.delay(50, fixed(0.0)) == 75.0


def test_bad_random_source_cannot_escape_the_bounds():
    policy = BackoffPolicy(initial=8.0, maximum=100.0, jitter=0.5)
    assert policy.delay(1, fixed(7.0)) == 12.0
    assert policy.delay(1, fixed(-3.0)) == 4.0
    assert policy.delay(1, fixed(math.nan)) == 8.0


def test_jitter_with_seeded_random_is_reproducible_and_bounded():
    policy = BackoffPolicy(initial=4.0, maximum=64.0, jitter=0.25)
    first = [policy.delay(n, random.Random(7).random) for n in range(1, 10)]
    again = [policy.delay(n, random.Random(7).random) for n in range(1, 10)]
    assert first == again
    rng = random.Random(1234)
    for n in range(1, 10):
        base = policy.base_delay(n)
        samples = [policy.delay(n, rng.random) for _ in range(200)]
        assert all(base * 0.75 <= s <= base * 1.25 for s in samples)
        assert len(set(samples)) > 1  # it really is jittered


def test_no_draw_without_jitter_or_delay():
    def boom():
        raise AssertionError('random source consulted')

    assert BackoffPolicy(jitter=0.0).delay(3, boom) == 4.0
    assert BackoffPolicy().delay(0, boom) == 0.0
    assert BackoffPolicy(initial=0.0, maximum=0.0).delay(5, boom) == 0.0


@pytest.mark.parametrize('kwargs, message', [
    ({'initial': -1.0}, 'initial must not be negative'),
    ({'maximum': math.inf}, 'maximum must be a finite number'),
    ({'jitter': math.nan}, 'jitter must be a finite number'),
    ({'reset_after': True}, 'reset_after must be a finite number'),
    ({'initial': '1'}, 'initial must be a finite number'),
    ({'initial': 10.0, 'maximum': 5.0}, r'maximum \(5.0\) must be at least initial \(10.0\)'),
    ({'multiplier': 0.5}, 'multiplier must be at least 1'),
    ({'jitter': 1.5}, r'jitter is a fraction of the delay in \[0, 1\]'),
])
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BackoffPolicy(**kwargs)


@given(
    initial=st.floats(0, 1e6),
    extra=st.floats(0, 1e6),
    multiplier=st.floats(1, 100),
    jitter=st.floats(0, 1),
    attempt=st.integers(-5, 10_000),
    draw=st.floats(allow_nan=True, allow_infinity=True),
)
def test_delay_always_within_zero_and_jittered_maximum(initial, extra, multiplier, jitter, attempt, draw):
    policy = BackoffPolicy(initial=initial, maximum=initial + extra, multiplier=multiplier, jitter=jitter)
    delay = policy.delay(attempt, fixed(draw))
    assert 0.0 <= delay <= policy.maximum * (1 + policy.jitter)


@given(
    policy=st.builds(BackoffPolicy, initial=st.floats(0, 100), maximum=st.just(100.0),
                     multiplier=st.floats(1, 10), jitter=st.floats(0, 1), reset_after=st.floats(0, 50)),
    runs=st.lists(st.tuples(st.floats(0, 100), st.booleans(), st.booleans()), max_size=40),
    seed=st.integers(0, 2**32),
)
def test_state_delays_always_within_bounds(policy, runs, seed):
    backoff = Backoff(policy, random.Random(seed).random)
    now = 0.0
    for length, clean, known_start in runs:
        started = now if known_start else None
        now += length
        delay = backoff.record_exit(started, now, clean)
        assert 0.0 <= delay <= policy.maximum * (1 + policy.jitter)
        assert delay == backoff.delay


# ----------------------------------------------------------------------------------------- state

def test_consecutive_failures_grow_the_delay():
    backoff = Backoff(BackoffPolicy(initial=1.0, maximum=10.0, jitter=0.0, reset_after=100.0))
    delays = [backoff.record_exit(started=t, stopped=t + 1, clean=False) for t in range(0, 60, 10)]
    assert delays == [1, 2, 4, 8, 10, 10]
    assert backoff.attempts == 6


def test_long_run_resets_the_count():
    backoff = Backoff(BackoffPolicy(initial=1.0, maximum=10.0, jitter=0.0, reset_after=100.0))
    for _ in range(4):
        backoff.record_exit(0, 1, clean=False)
    assert backoff.delay == 8
    # A failure after a healthy run waits only `initial` again.
    assert backoff.record_exit(started=10, stopped=110, clean=False) == 1
    assert backoff.attempts == 1
    # Just short of reset_after does not reset.
    assert backoff.record_exit(started=200, stopped=299.5, clean=False) == 2


def test_clean_exits():
    backoff = Backoff(BackoffPolicy(initial=1.0, maximum=10.0, jitter=0.0, reset_after=100.0))
    # A short clean run is a crash loop with exit code 0: it counts.
    assert backoff.record_exit(0, 2, clean=True) == 1
    assert backoff.record_exit(10, 12, clean=True) == 2
    # A long clean run is healthy: no delay, count forgotten.
    assert backoff.record_exit(20, 120, clean=True) == 0
    assert backoff.attempts == 0
    assert backoff.record_exit(130, 131, clean=False) == 1


def test_unknown_start_never_resets():
    backoff = Backoff(BackoffPolicy(initial=1.0, maximum=10.0, jitter=0.0, reset_after=0.0))
    backoff.record_exit(None, 1000, clean=False)
    assert backoff.record_exit(None, 2000, clean=True) == 2
    # reset_after=0: every known run is "long", giving a fixed `initial` delay after failures.
    assert backoff.record_exit(2000, 2000, clean=False) == 1
    assert backoff.record_exit(2001, 2001, clean=False) == 1


# --------------------------------------------------------------------------- TaskPlanner wiring

def proc(**kw):
    kw.setdefault('name', 'p')
    kw.setdefault('cmdline', 'false')
    kw.setdefault('max_failures', 0)
    return Process(**kw)


def backoff(**kw):
    kw.setdefault('jitter', 0.0)
    return RestartBackoff(**kw)


def fail_at(planner, name, started, stopped):
    planner.set_running(name, timestamp=started)
    planner.add_failure(name, timestamp=stopped)


def test_planner_backoff_grows_after_failures():
    task = Task(processes=[proc(min_duration=0, backoff=backoff(initial=1, maximum=8))])
    p = TaskPlanner(task, clock=FakeClock())
    waits = []
    t = 0.0
    for _ in range(6):
        fail_at(p, 'p', t, t + 0.5)
        t += 0.5
        waits.append(p.get_wait('p', timestamp=t))
        assert p.waiting_at(t) == {'p'}
        assert p.min_wait(t) == waits[-1]
        t += waits[-1]
        assert p.runnable_at(t) == {'p'}
    assert waits == [1, 2, 4, 8, 8, 8]


def test_planner_wait_is_the_larger_of_min_duration_and_backoff():
    task = Task(processes=[proc(min_duration=5, backoff=backoff(initial=1, maximum=20, multiplier=2))])
    p = TaskPlanner(task, clock=FakeClock())
    waits = []
    t = 0.0
    for _ in range(6):
        fail_at(p, 'p', t, t + 1)
        t += 1
        waits.append(p.get_wait('p', timestamp=t))
        t += 100
    # backoff 1, 2, 4 is hidden by min_duration 5; 8, 16 and the cap 20 show through.
    assert waits == [5, 5, 5, 8, 16, 20]
    # Both count from the end of the last run.
    assert p.get_wait('p', timestamp=t - 100 + 15) == 5


def test_planner_long_run_resets_backoff():
    task = Task(processes=[proc(min_duration=0, backoff=backoff(initial=1, maximum=64, reset_after=60))])
    p = TaskPlanner(task, clock=FakeClock())
    for t in (0, 10, 20, 30):
        fail_at(p, 'p', t, t + 1)
    assert p.get_wait('p', timestamp=31) == 8
    fail_at(p, 'p', 100, 160)  # ran a full minute
    assert p.get_wait('p', timestamp=160) == 1


def test_planner_set_running_defaults_to_clock_and_keeps_first_start():
    clock = FakeClock(now=100)
    task = Task(processes=[proc(min_duration=0, backoff=backoff(initial=1, maximum=64, reset_after=60))])
    p = TaskPlanner(task, clock=clock)
    fail_at(p, 'p', 0, 1)
    fail_at(p, 'p', 2, 3)
    p.set_running('p')          # start stamped at 100 from the clock
    clock.now = 130
    p.set_running('p')          # same run (e.g. a replayed record): start stays 100
    p.add_failure('p', timestamp=165)
    assert p.get_wait('p', timestamp=165) == 1  # 65 s run >= reset_after


def test_planner_daemon_clean_exits():
    task = Task(processes=[proc(daemon=True, min_duration=0,
                                backoff=backoff(initial=2, maximum=64, reset_after=60))])
    p = TaskPlanner(task, clock=FakeClock())
    p.set_running('p', timestamp=0)
    p.add_success('p', timestamp=1)  # crash loop with exit 0
    assert p.get_wait('p', timestamp=1) == 2
    p.set_running('p', timestamp=10)
    p.add_success('p', timestamp=11)
    assert p.get_wait('p', timestamp=11) == 4
    p.set_running('p', timestamp=20)
    p.add_success('p', timestamp=200)  # healthy run: only min_duration applies
    assert p.get_wait('p', timestamp=200) == 0
    assert p.runnable_at(200) == {'p'}


def test_planner_lost_backs_off_without_counting_a_failure():
    task = Task(processes=[proc(max_failures=2, min_duration=0, backoff=backoff(initial=3, maximum=64))])
    p = TaskPlanner(task, clock=FakeClock())
    p.set_running('p', timestamp=0)
    p.lost('p', timestamp=1)
    assert p.get_wait('p', timestamp=1) == 3
    p.set_running('p', timestamp=4)
    p.lost('p', timestamp=5)
    assert p.get_wait('p', timestamp=5) == 6
    p.set_running('p', timestamp=11)
    p.add_failure('p', timestamp=12)
    assert p.get_wait('p', timestamp=12) == 12
    assert p.failed == set()
    p.set_running('p', timestamp=30)
    p.add_failure('p', timestamp=31)
    assert p.failed == {'p'}
    assert p.min_wait(31) == TaskPlanner.INFINITY


def test_planner_jitter_comes_from_the_injected_source():
    task = Task(processes=[proc(min_duration=0, backoff=RestartBackoff(initial=10, jitter=0.5))])
    p = TaskPlanner(task, clock=FakeClock(), random=fixed(1.0))
    fail_at(p, 'p', 0, 1)
    assert p.get_wait('p', timestamp=1) == 15
    p = TaskPlanner(task, clock=FakeClock(), random=fixed(0.0))
    fail_at(p, 'p', 0, 1)
    assert p.get_wait('p', timestamp=1) == 5


def test_planner_backoff_is_per_process():
    task = Task(processes=[proc(name='a', min_duration=1, backoff=backoff(initial=1, maximum=64)),
                           proc(name='b', min_duration=1)])
    p = TaskPlanner(task, clock=FakeClock())
    for t in (0, 10, 20, 30):
        fail_at(p, 'a', t, t + 1)
        fail_at(p, 'b', t, t + 1)
    assert p.get_wait('a', timestamp=31) == 8
    assert p.get_wait('b', timestamp=31) == 1
    assert p.attributes('a').backoff == BackoffPolicy(1.0, 64.0, 2.0, 0.0, 600.0)
    assert p.attributes('b').backoff is None


def test_invalid_backoff_is_an_invalid_schedule_naming_the_process():
    task = Task(processes=[proc(name='web', backoff=RestartBackoff(initial=10, maximum=1))])
    with pytest.raises(InvalidSchedule, match=r"process 'web' has an invalid backoff: backoff maximum"):
        TaskPlanner(task)


def test_run_cap_still_applies_with_backoff():
    class ThreeRuns(TaskPlanner):
        TOTAL_RUN_LIMIT = 3

    p = ThreeRuns(Task(processes=[proc(backoff=backoff())]), clock=FakeClock())
    for t in (0, 100, 200):
        fail_at(p, 'p', t, t + 1)
    assert p.failed == {'p'}


# Event scripts for the "no effect when unset" property: (event, gap before it).
EVENTS = st.lists(st.tuples(st.sampled_from(['success', 'failure', 'lost']), st.floats(0, 20)),
                  max_size=30)


def replay(planner, script, probe):
    """Drive `planner` through `script`, returning what it reports after every step."""
    seen = []
    t = 0.0
    for event, gap in script:
        if 'p' in planner.failed | planner.finished:
            break
        t += gap
        planner.set_running('p', timestamp=t)
        t += gap
        {'success': planner.add_success, 'failure': planner.add_failure, 'lost': planner.lost}[event](
            'p', timestamp=t)
        seen.append(tuple(
            (planner.get_wait('p', t + dt), planner.min_wait(t + dt),
             frozenset(planner.runnable_at(t + dt)), frozenset(planner.failed),
             frozenset(planner.finished), planner.is_complete())
            for dt in probe))
    return seen


@given(script=EVENTS, daemon=st.booleans(), max_failures=st.integers(0, 4), min_duration=st.integers(0, 10))
def test_unset_or_zero_backoff_is_aurora(script, daemon, max_failures, min_duration):
    base = proc(daemon=daemon, max_failures=max_failures, min_duration=min_duration)
    probe = (0.0, 0.5, min_duration / 2, float(min_duration), min_duration + 1.0)
    plain = replay(TaskPlanner(Task(processes=[base]), clock=FakeClock()), script, probe)
    zero = TaskPlanner(Task(processes=[base(backoff=RestartBackoff(initial=0, maximum=0))]),
                       clock=FakeClock())
    assert replay(zero, script, probe) == plain
    # And the un-backed-off planner is Aurora's formula: min_duration counted from the last exit.
    for step in plain:
        (wait0, *_), *_ = step
        assert wait0 == min_duration
