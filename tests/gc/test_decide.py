"""The shared decision on synthetic tasks: Aurora's reconcile table, bugs fixed, and the watch triggers."""

import pytest
from thermos.gc.decide import FsUsage, GcPolicy, LocalTask, decide, relieved, select_by_policy

from thermos.gen.aurora.ttypes import ScheduleStatus as S
from thermos.gen.thermos.ttypes import TaskState

NOW = 2_000_000_000.0
HOUR = 3600.0
LIVE = (S.RUNNING, S.KILLING, S.PREEMPTING, S.RESTARTING, S.DRAINING, S.PARTITIONED, S.STARTING)
TERMINAL = (S.FINISHED, S.FAILED, S.KILLED, S.LOST)
POLICY = GcPolicy()


def live(task_id="t", age=2 * HOUR):
    return LocalTask("/root", task_id, finished=False, runner_alive=True, task_state=TaskState.ACTIVE,
                     started=NOW - age, modified=NOW - 1)


def stale(task_id="t", still=2 * HOUR):
    """The checkpoint says ACTIVE but no runner holds it."""
    return LocalTask("/root", task_id, finished=False, runner_alive=False, task_state=TaskState.ACTIVE,
                     started=NOW - 3 * HOUR, modified=NOW - still)


def done(task_id="t", state=TaskState.SUCCESS, age=HOUR, **kw):
    return LocalTask("/root", task_id, finished=True, task_state=state, started=NOW - 2 * age,
                     modified=NOW - age, **kw)


def plan_for(tasks, retained, **policy):
    return decide(tasks, retained, GcPolicy(**policy) if policy else POLICY, NOW)


def is_noop(plan):
    return not (plan.kill or plan.lose or plan.delete or plan.updates)


@pytest.mark.parametrize("status", LIVE + (S.ASSIGNED,))
def test_a_live_task_the_scheduler_wants_is_left_alone(status):
    assert is_noop(plan_for([live()], {"t": status}))


@pytest.mark.parametrize("status", TERMINAL)
def test_a_finished_task_the_scheduler_retains_as_terminal_is_kept(status):
    assert is_noop(plan_for([done()], {"t": status}))


@pytest.mark.parametrize("retained", [{"t": S.FINISHED}, {"t": S.LOST}, {}])
def test_a_live_task_the_scheduler_does_not_want_is_killed_once_old_enough(retained):
    plan = plan_for([live(age=2 * HOUR)], retained)
    assert [t.task_id for t in plan.kill] == ["t"] and not plan.updates and not plan.delete
    young = plan_for([live(age=60)], retained)
    assert not young.kill and young.skipped[0][1] == "running for less than the minimum kill age"


@pytest.mark.parametrize("status, mesos", [(S.RUNNING, "TASK_FINISHED"), (S.ASSIGNED, "TASK_FINISHED")])
def test_a_finished_task_the_scheduler_thinks_live_gets_its_actual_status(status, mesos):
    plan = plan_for([done()], {"t": status})
    assert [(u.task_id, u.mesos_state, u.schedule_status) for u in plan.updates] == [("t", mesos, S.FINISHED)]
    assert plan.updates[0].message == "Task finish detected by GC executor." and not plan.delete


@pytest.mark.parametrize("state, mesos, schedule", [(TaskState.FAILED, "TASK_FAILED", S.FAILED),
                                                    (TaskState.KILLED, "TASK_KILLED", S.KILLED),
                                                    (TaskState.LOST, "TASK_LOST", S.LOST)])
def test_the_actual_terminal_state_is_reported(state, mesos, schedule):
    [update] = plan_for([done(state=state)], {"t": S.RUNNING}).updates
    assert (update.mesos_state, update.schedule_status) == (mesos, schedule)


def test_an_unreadable_finished_checkpoint_is_collected_instead_of_reported_once_old():
    plan = plan_for([done(state=None, age=HOUR)], {"t": S.RUNNING})
    assert not plan.updates and [t.task_id for t in plan.delete] == ["t"]
    assert not plan_for([done(state=None, age=60)], {"t": S.RUNNING}).delete


def test_a_finished_task_the_scheduler_forgot_is_deleted():
    assert [t.task_id for t in plan_for([done()], {}).delete] == ["t"]


@pytest.mark.parametrize("status", LIVE)
def test_a_task_with_no_trace_here_is_reported_lost(status):
    plan = plan_for([], {"gone": status})
    assert [(u.task_id, u.mesos_state, u.message) for u in plan.updates] == [
        ("gone", "TASK_LOST", "GC executor found no trace of task.")]


@pytest.mark.parametrize("status", TERMINAL + (S.ASSIGNED,))
def test_no_trace_of_an_assigned_or_terminal_task_is_fine(status):
    assert is_noop(plan_for([], {"gone": status}))


def test_a_stale_active_checkpoint_is_not_a_live_task():
    """Aurora trusted the checkpoint's ACTIVE and never found a runner healthy; here the runner decides."""
    plan = plan_for([stale(still=2 * HOUR)], {"t": S.RUNNING})
    assert [t.task_id for t in plan.lose] == ["t"] and not plan.kill
    assert [(u.mesos_state, u.message) for u in plan.updates] == [
        ("TASK_LOST", "GC executor detected failed task runner.")]
    # Not retained by anyone: marked LOST locally, nothing to tell the scheduler.
    forgotten = plan_for([stale(still=2 * HOUR)], {})
    assert forgotten.lose and not forgotten.updates
    # Recently touched: maybe a runner about to take over; left alone.
    recent = plan_for([stale(still=60)], {"t": S.RUNNING})
    assert is_noop(recent) and "runner not running" in recent.skipped[0][1]


def test_a_mesos_run_without_sentinel_is_never_touched():
    task = done(run_finished=False)
    for retained in ({}, None):
        plan = plan_for([task], retained, max_age=0)
        assert is_noop(plan) and not plan.pressure
        assert plan.skipped == [(task, "its Mesos executor run has no executor.sentinel yet")]
    assert plan_for([done(run_finished=True)], {}).delete


def test_the_watch_daemon_never_kills_or_loses():
    plan = plan_for([live(), stale(task_id="s", still=10 * HOUR), done(task_id="d")], None, max_age=0)
    assert not plan.kill and not plan.lose and not plan.updates
    assert [t.task_id for t in plan.delete] == ["d"]
    assert "thermos kill s" in dict((t.task_id, r) for t, r in plan.skipped)["s"]


def tasks_by_age(n, **kw):
    return [done(task_id="t%d" % i, age=(n - i) * HOUR, **kw) for i in range(n)]  # t0 oldest


def ids(tasks):
    return [t.task_id for t in tasks]


def test_the_watch_count_trigger_collects_the_oldest_beyond_the_limit():
    plan = plan_for(tasks_by_age(5), None, max_terminal_tasks=3)
    assert ids(plan.delete) == ["t0", "t1"] and plan.triggers == ["5 finished tasks > 3"]
    assert not plan_for(tasks_by_age(3), None, max_terminal_tasks=3).triggers


def test_the_watch_landed_policy_matches_monitoring_garbage():
    finished = tasks_by_age(5, size=100)
    def chosen(**policy):
        return sorted(key[1] for key in select_by_policy(finished, GcPolicy(**policy), NOW))

    assert chosen(max_age=3.5 * HOUR) == ["t0", "t1"]
    assert chosen(max_tasks=2) == ["t0", "t1", "t2"]
    assert chosen(max_space=250) == ["t0", "t1", "t2"]


def test_disk_pressure_offers_the_oldest_finished_tasks_on_that_filesystem_only():
    tasks = [done(task_id="a_old", age=5 * HOUR, device=1), done(task_id="b_old", age=4 * HOUR, device=2),
             done(task_id="a_new", age=1 * HOUR, device=1)]
    usage = {1: FsUsage(disk_percent=95.0, inode_percent=10.0),
             2: FsUsage(disk_percent=50.0, inode_percent=10.0)}
    plan = decide(tasks, None, GcPolicy(disk_high=90, disk_low=80), NOW, usage)
    assert ids(plan.pressure) == ["a_old", "a_new"] and not plan.delete
    assert plan.triggers == ["disk usage 95.0% > 90% on device 1"]
    inodes = decide(tasks, None, GcPolicy(inode_high=5), NOW, usage)
    assert ids(inodes.pressure) == ["a_old", "b_old", "a_new"]


def test_relief_needs_both_low_water_marks():
    policy = GcPolicy(disk_high=90, disk_low=80, inode_high=90)
    assert not relieved(FsUsage(85.0, 10.0), policy)
    assert relieved(FsUsage(79.0, 10.0), policy)
    assert not relieved(FsUsage(79.0, 95.0), policy)


def test_deletion_order_is_oldest_first_whatever_the_input_order():
    tasks = tasks_by_age(4)
    assert ids(plan_for(list(reversed(tasks)), {}).delete) == ["t0", "t1", "t2", "t3"]


def test_a_finished_task_whose_runner_still_holds_the_lock_is_never_collected():
    task = done(runner_alive=True)
    for retained in ({}, None):
        plan = plan_for([task], retained, max_age=0)
        assert not plan.delete and not plan.pressure
        assert plan.skipped == [(task, "finished, but a runner still holds its checkpoint")]
