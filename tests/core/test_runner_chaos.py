"""Chaos: SIGKILL the runner at random moments and restart it; the outcome must not change.

Seeded and reproducible (THERMOS_CHAOS_SEED, THERMOS_CHAOS_TRIALS). Each trial runs one of the
task shapes below, kills its runner 1-3 times at random moments, restarts it with the same
arguments, and compares against an undisturbed run of the same shape: the final task state and
every process's run states must be equal, no record may be duplicated, and nothing of the task
may be alive afterwards.
"""

import os
import random

import pytest

from thermos.common.ckpt import CheckpointDispatcher
from thermos.gen.thermos.ttypes import TaskState
from thermos.testing.runner import RunnerHarness

from .runner_util import alive, assert_states_agree, proc, states, task, wait_until

SEED = int(os.environ.get("THERMOS_CHAOS_SEED", "20261127"))
TRIALS = int(os.environ.get("THERMOS_CHAOS_TRIALS", "50"))


def count_then(name, fail_times, sleep="0.2"):
    return (f"n=$(cat {name}.n 2>/dev/null || echo 0); n=$((n+1)); echo $n > {name}.n; sleep {sleep}; "
            f"[ $n -gt {fail_times} ]")


SHAPES = {
    "chain": lambda: task(proc("a", "sleep 0.2"), proc("b", "sleep 0.3"), proc("c", "sleep 0.1"),
                          proc("fin", "sleep 0.1", final=True), order=[["a", "b", "c"]]),
    "retries": lambda: task(proc("flaky", count_then("flaky", 2), max_failures=5),
                            proc("after", "true"), order=[["flaky", "after"]]),
    "daemon": lambda: task(
        proc("d", "n=$(cat d.n 2>/dev/null || echo 0); n=$((n+1)); echo $n > d.n; sleep 0.2; "
                  "[ $n -lt 3 ]", daemon=True, max_failures=1),
        proc("main", "sleep 0.5"), max_failures=2),
    "ephemeral": lambda: task(proc("eph", "exec sleep 300", ephemeral=True), proc("main", "sleep 0.6"),
                              proc("fin", "true", final=True), finalization_wait=10),
    "failing": lambda: task(proc("bad", count_then("bad", 9, "0.1"), max_failures=2),
                            proc("fin", "sleep 0.2", final=True)),
}


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    out = {}
    for name, shape in SHAPES.items():
        result = RunnerHarness(shape(), root=str(tmp_path_factory.mktemp("baseline-" + name))).run()
        assert result.returncode == 0, result.stderr
        out[name] = result
    return out


def all_pids(state):
    return {pid for runs in state.processes.values() for run in runs
            for pid in (run.coordinator_pid, run.pid) if pid}


def assert_no_duplicate_records(path):
    seen = set()
    for record in CheckpointDispatcher.iter_updates(path):
        status = record.process_status
        if status is not None:
            key = (status.process, status.seq)
            assert key not in seen, "record %s duplicated" % (key,)
            seen.add(key)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_chaos(tmp_path, baselines, trial):
    rng = random.Random(SEED + trial)
    name = sorted(SHAPES)[trial % len(SHAPES)]
    kills = [round(rng.uniform(0.02, 0.8), 3) for _ in range(rng.randint(1, 3))]
    harness = RunnerHarness(SHAPES[name](), root=str(tmp_path))
    result = harness.run_with_kills(kills)
    # 105: the task had already finished before the last restart (nothing left to run).
    assert result.returncode in (0, 105), result.stderr
    assert_states_agree(result)
    baseline = baselines[name]
    context = "shape %s, kills at %s (seed %d)" % (name, kills, SEED + trial)
    assert result.task_state == baseline.task_state, context
    assert sorted(result.reconstructed_state.processes) == sorted(baseline.reconstructed_state.processes)
    for process in baseline.reconstructed_state.processes:
        assert states(result, process) == states(baseline, process), "%s: %s" % (process, context)
    assert_no_duplicate_records(harness.runner_checkpoint)
    assert result.task_state in (TaskState.SUCCESS, TaskState.FAILED)
    pids = all_pids(result.reconstructed_state)
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10)
    assert os.path.exists(harness.pathspec.given(state="finished").getpath("task_path"))
