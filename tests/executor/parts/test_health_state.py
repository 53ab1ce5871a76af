"""Aurora's health-check decisions as a pure state machine (spec §1.7, §7): no clock, no I/O."""

from thermos.executor.checkers.base import TASK_FAILED, TASK_RUNNING, TASK_STARTING, StatusResult
from thermos.executor.checkers.health import HealthChecker, HealthCheckPolicy, HealthState

DEFAULT = HealthCheckPolicy(interval_secs=10.0, initial_interval_secs=15.0)  # Aurora's defaults


def feed(policy, results):
    """Statuses after each result: 'S' pass, 'F' fail."""
    state = HealthState(policy)
    seen = []
    for result in results:
        if state.out_of_attempts:
            state.give_up()
        else:
            state.record(result == "S", None if result == "S" else "check %d failed" % (len(seen) + 1))
        seen.append(state.status.status)
    return seen, state


def test_grace_and_attempt_arithmetic():
    assert (DEFAULT.forgiving_attempts, DEFAULT.max_attempts) == (2, 3)
    assert HealthCheckPolicy(interval_secs=5, initial_interval_secs=None).forgiving_attempts == 2
    assert HealthCheckPolicy(interval_secs=10, initial_interval_secs=0).forgiving_attempts == 0


def test_one_pass_is_running():
    statuses, state = feed(DEFAULT, "S")
    assert statuses == [TASK_RUNNING] and state.status == StatusResult("Task is healthy.", TASK_RUNNING)


def test_a_failure_in_grace_then_a_pass():
    assert feed(DEFAULT, "FS")[0] == [TASK_STARTING, TASK_RUNNING]


def test_three_failures_fail_on_the_third():
    statuses, state = feed(DEFAULT, "FFF")
    assert statuses == [TASK_STARTING, TASK_STARTING, TASK_FAILED]
    assert state.status == StatusResult("Failed health check! check 3 failed", TASK_FAILED)


def test_no_grace_fails_on_the_first_failure():
    assert feed(HealthCheckPolicy(interval_secs=10, initial_interval_secs=0), "F")[0] == [TASK_FAILED]


def test_failures_inside_grace_are_forgiven_even_after_running():
    assert feed(DEFAULT, "SF")[0] == [TASK_RUNNING, TASK_RUNNING]


def test_max_failures_two_min_successes_two():
    policy = HealthCheckPolicy(interval_secs=10, initial_interval_secs=0, max_consecutive_failures=2,
                               min_consecutive_successes=2)
    # Five attempts allowed; the third consecutive failure exceeds the limit.
    assert feed(policy, "FFF")[0] == [TASK_STARTING, TASK_STARTING, TASK_FAILED]
    assert feed(policy, "SSFFSF")[0][1] == TASK_RUNNING


def test_running_task_fails_after_too_many_consecutive_failures():
    policy = HealthCheckPolicy(interval_secs=10, initial_interval_secs=0, max_consecutive_failures=1)
    statuses, _ = feed(policy, "SFSFF")
    assert statuses == [TASK_RUNNING] * 4 + [TASK_FAILED]


def test_fail_fast_when_too_few_attempts_remain():
    policy = HealthCheckPolicy(interval_secs=10, initial_interval_secs=20, max_consecutive_failures=2,
                               min_consecutive_successes=4)
    # 8 attempts; after the 5th check only 3 remain, fewer than the 4 passes still needed.
    statuses, _ = feed(policy, "SSSFF")
    assert statuses == [TASK_STARTING] * 4 + [TASK_FAILED]


def test_not_enough_successes_in_time():
    policy = HealthCheckPolicy(interval_secs=10, initial_interval_secs=10, max_consecutive_failures=5,
                               min_consecutive_successes=2)
    # Alternating results never reach two passes in a row; once attempts are used up, give up.
    statuses, state = feed(policy, "SFSFSFSFSFS")
    assert TASK_RUNNING not in statuses and statuses[-1] == TASK_FAILED
    assert state.reason == "Not enough successful health checks in time."


def test_unhealthy_is_permanent():
    statuses, state = feed(HealthCheckPolicy(interval_secs=1, initial_interval_secs=0), "FSSS")
    assert statuses == [TASK_FAILED] * 4


def test_checker_cycles_with_a_scripted_probe_and_fake_clock():
    now = [100.0]
    results = iter([(False, "boom"), (True, None)])

    def probe():
        now[0] += 0.25
        return next(results)

    checker = HealthChecker(probe, DEFAULT, clock=lambda: now[0])
    assert checker.status.status == TASK_STARTING
    assert checker.check_once().status == TASK_STARTING
    assert checker.check_once() == StatusResult("Task is healthy.", TASK_RUNNING)
    assert checker.metrics() == {"consecutive_failures": 0, "snoozed": 0, "total_latency_secs": 0.5,
                                 "checks": 2}


def test_probe_exception_is_a_failure_with_a_reason():
    def probe():
        raise RuntimeError("probe broke")

    checker = HealthChecker(probe, HealthCheckPolicy(interval_secs=1, initial_interval_secs=0))
    assert checker.check_once() == StatusResult(
        "Failed health check! Internal health check error: probe broke", TASK_FAILED)


def test_snooze_file_passes_without_probing(tmp_path):
    calls = []

    def probe():
        calls.append(1)
        return False, "down"

    policy = HealthCheckPolicy(interval_secs=1, initial_interval_secs=0)
    checker = HealthChecker(probe, policy, sandbox_root=str(tmp_path))
    (tmp_path / ".healthchecksnooze").write_text("")
    assert checker.check_once().status == TASK_RUNNING
    assert calls == [] and checker.metrics()["snoozed"] == 1
    (tmp_path / ".healthchecksnooze").unlink()
    assert checker.check_once().status == TASK_FAILED and calls == [1]


def test_snooze_needs_a_sandbox_that_existed_at_construction(tmp_path):
    sandbox = tmp_path / "later"
    policy = HealthCheckPolicy(interval_secs=1, initial_interval_secs=0)
    checker = HealthChecker(lambda: (False, "down"), policy, sandbox_root=str(sandbox))
    sandbox.mkdir()
    (sandbox / ".healthchecksnooze").write_text("")
    assert checker.check_once().status == TASK_FAILED
