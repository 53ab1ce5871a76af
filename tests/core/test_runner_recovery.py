"""Taking over a task from a dead runner: no repeated signals, the finalization clock is kept."""

import os
import signal
import time

from thermos.gen.thermos.ttypes import TaskState
from thermos.testing.runner import RunnerHarness

from .runner_util import S, assert_states_agree, proc, states, task, wait_until

STUBBORN = "trap 'echo TERM >> terms' TERM; touch ready; while :; do sleep 0.05; done"
AFTER_READY = "while [ ! -e ready ]; do sleep 0.01; done"  # SIGTERM must not beat the trap


def lines(path):
    try:
        with open(path) as fp:
            return fp.read().splitlines()
    except OSError:
        return []


def test_restart_in_cleaning_keeps_the_clock_and_sends_no_second_sigterm(tmp_path):
    wait = 3
    t = task(proc("stubborn", STUBBORN, ephemeral=True), proc("main", AFTER_READY), finalization_wait=wait)
    harness = RunnerHarness(t, root=str(tmp_path))
    runner = harness.start()
    terms = os.path.join(harness.sandbox, "terms")
    wait_until(lambda: lines(terms))  # CLEANING began and SIGTERMed the stubborn process
    time.sleep(1.5)  # spend part of the finalization budget before the crash
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    result = harness.finish(harness.start(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert_states_agree(result)
    assert lines(terms) == ["TERM"], "the new runner signalled again"
    statuses = result.reconstructed_state.statuses
    cleaning = next(s.timestamp_ms for s in statuses if s.state == TaskState.CLEANING)
    assert statuses[-1].state == TaskState.SUCCESS
    elapsed = (statuses[-1].timestamp_ms - cleaning) / 1000.0
    # a reset clock would take 1.5 s + the whole budget again
    assert wait - 0.1 <= elapsed < wait + 1.0, elapsed
    assert states(result, "stubborn") == [S.KILLED]


def test_restart_while_being_killed_keeps_the_recorded_kill(tmp_path):
    """The kill's intent and deadline are in the checkpoint: a restarted runner keeps the 60 s
    preemption deadline (not the task's 3 s finalization_wait) and still ends KILLED."""
    t = task(proc("stubborn", STUBBORN), proc("fin", "true", final=True), finalization_wait=3)
    harness = RunnerHarness(t, root=str(tmp_path))
    runner = harness.start()
    wait_until(lambda: os.path.exists(os.path.join(harness.sandbox, "ready")))
    os.kill(runner.pid, signal.SIGUSR1)
    wait_until(lambda: lines(os.path.join(harness.sandbox, "terms")))
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    again = harness.start()
    harness.wait_for(lambda s: len(s.statuses) >= 3)  # ACTIVE, CLEANING, and the takeover's record
    time.sleep(4)  # the window in which the task's own 3 s finalization clock would have run out
    state = harness.wait_for(lambda s: s)
    assert state.statuses[-1].state == TaskState.CLEANING  # still honouring the recorded deadline
    os.kill(state.processes["stubborn"][-1].pid, signal.SIGKILL)  # let the stop go on
    result = harness.finish(again, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.task_state == TaskState.KILLED
    assert states(result, "stubborn") == [S.KILLED]
    assert states(result, "fin") == [S.SUCCESS]  # the recorded deadline left time for finalizers
    assert lines(os.path.join(harness.sandbox, "terms")) == ["TERM"]
