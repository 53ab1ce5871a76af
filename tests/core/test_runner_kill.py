"""Killing processes, coordinators and whole tasks: outcomes and leftovers."""

import os
import signal

import psutil
import pytest

from thermos.gen.thermos.ttypes import TaskState
from thermos.testing.runner import RunnerHarness

from .runner_util import S, alive, assert_states_agree, proc, read_pid, states, task, wait_until

RETRY_ONCE = "if [ -e marker ]; then exit 0; else touch marker; exec sleep 60; fi"


def marked_run(harness, name):
    """The RUNNING run of a RETRY_ONCE process, once its shell has left the marker."""
    run = harness.wait_for_running(name)
    wait_until(lambda: os.path.exists(os.path.join(harness.sandbox, "marker")))
    return run


def finish(harness, runner):
    result = harness.finish(runner, timeout=60)
    assert result.returncode == 0, result.stderr
    assert_states_agree(result)
    return result


def test_sigkill_of_the_user_process_is_killed_then_retried(tmp_path):
    harness = RunnerHarness(task(proc("p", RETRY_ONCE)), root=str(tmp_path))
    runner = harness.start()
    run = marked_run(harness, "p")
    os.kill(run.pid, signal.SIGKILL)
    result = finish(harness, runner)
    assert states(result, "p") == [S.KILLED, S.SUCCESS]
    assert result.runs("p")[0].return_code == -9
    assert result.task_state == TaskState.SUCCESS


def test_sigkill_of_the_coordinator_is_lost_then_retried(tmp_path):
    harness = RunnerHarness(task(proc("p", RETRY_ONCE)), root=str(tmp_path))
    runner = harness.start()
    run = marked_run(harness, "p")
    os.kill(run.coordinator_pid, signal.SIGKILL)
    result = finish(harness, runner)
    assert states(result, "p") == [S.LOST, S.SUCCESS]
    assert result.task_state == TaskState.SUCCESS
    assert not alive(run.pid)


def test_success_cleanup_kills_forked_children(tmp_path):
    t = task(proc("p", "sleep 300 & echo $! > child.pid; exit 0"))
    harness = RunnerHarness(t, root=str(tmp_path))
    result = harness.run()
    assert states(result, "p") == [S.SUCCESS]
    child = read_pid(os.path.join(harness.sandbox, "child.pid"))
    assert child is not None
    wait_until(lambda: not alive(child), timeout=10)


@pytest.mark.parametrize("sig,expected", [(signal.SIGUSR1, TaskState.KILLED),
                                          (signal.SIGUSR2, TaskState.LOST),
                                          (signal.SIGTERM, TaskState.KILLED)])
def test_runner_signals_stop_the_task(tmp_path, sig, expected):
    t = task(proc("p", "exec sleep 300"), proc("fin", "echo bye > bye", final=True), finalization_wait=10)
    harness = RunnerHarness(t, root=str(tmp_path))
    runner = harness.start()
    run = harness.wait_for_running("p")
    os.kill(runner.pid, sig)
    result = finish(harness, runner)
    assert result.task_state == expected
    assert states(result, "p") == [S.KILLED]
    assert not alive(run.pid)
    if expected == TaskState.KILLED:  # a kill with a preemption wait still runs finalizers
        assert states(result, "fin") == [S.SUCCESS]


def test_no_escapes_double_forked_setsid_daemon(tmp_path):
    """A process that double-forks and setsid()s a sleeper: after a kill, nothing survives."""
    cmd = "( setsid sleep 300 & echo $! > escaped.pid ); exec sleep 300"
    harness = RunnerHarness(task(proc("p", cmd)), root=str(tmp_path))
    runner = harness.start()
    run = harness.wait_for_running("p")
    escaped = wait_until(lambda: read_pid(os.path.join(harness.sandbox, "escaped.pid")))
    # it has left the task's session and process group, and was adopted by the runner
    wait_until(lambda: alive(escaped) and psutil.Process(escaped).ppid() == runner.pid
               and os.getsid(escaped) != os.getsid(run.pid))
    tree = {run.coordinator_pid, run.pid, escaped}
    os.kill(runner.pid, signal.SIGUSR1)
    result = finish(harness, runner)
    assert result.task_state == TaskState.KILLED
    wait_until(lambda: not any(alive(pid) for pid in tree), timeout=10)


def test_dead_runner_coordinator_and_process_then_kill_force_leaves_one_lost_run(tmp_path):
    from thermos.core.runner import TaskRunner

    harness = RunnerHarness(task(proc("p", "exec sleep 300")), root=str(tmp_path))
    runner = harness.start()
    run = harness.wait_for_running("p")
    for pid in (runner.pid, run.coordinator_pid, run.pid):
        os.kill(pid, signal.SIGKILL)
    runner.wait(timeout=10)
    wait_until(lambda: not alive(run.pid) and not alive(run.coordinator_pid))
    TaskRunner.get(harness.task_id, harness.checkpoint_root).kill(force=True)
    result = harness.result(0, "", "", [runner.pid])
    assert states(result, "p") == [S.LOST]
    assert result.task_state == TaskState.KILLED
