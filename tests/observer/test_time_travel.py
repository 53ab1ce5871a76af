"""Replaying a checkpoint up to a moment, and the process timeline, on a checkpoint with known times."""

from __future__ import annotations

from thermos.observer.time_travel import state_at, timeline

from thermos.gen.thermos.ttypes import ProcessState, TaskState
from thermos.testing import ckpt as synth

T = 1.7e9  # runner_stream's clock: process_N of run R forks at T + (R * 2 + N), runs 0.01 s later


def write(tmp_path):
    path = str(tmp_path / "runner")
    synth.write_stream(path, synth.runner_stream(processes=2, runs=2))
    return path


def test_state_at_each_moment(tmp_path):
    path = write(tmp_path)
    before = state_at(path, int(T * 1000) - 1)
    assert before.header is None and not before.statuses
    first = state_at(path, int((T + 0.5) * 1000))
    [run] = first.processes["process_0"]
    assert run.state == ProcessState.RUNNING and first.statuses[-1].state == TaskState.ACTIVE
    assert "process_1" not in first.processes
    later = state_at(path, int((T + 1.5) * 1000))
    assert later.processes["process_0"][0].state == ProcessState.FAILED
    assert later.processes["process_1"][-1].state == ProcessState.RUNNING
    end = state_at(path, int((T + 100) * 1000))
    assert end.statuses[-1].state == TaskState.SUCCESS
    assert [len(runs) for runs in end.processes.values()] == [2, 2]


def test_timeline_lists_every_run_in_order(tmp_path):
    data = timeline(write(tmp_path))
    assert data["start"] == T and data["end"] == T + 4.0
    runs = data["processes"]["process_0"]
    assert [(r["run"], r["state"], r["return_code"]) for r in runs] == [(0, "FAILED", 1), (1, "SUCCESS", 0)]
    assert runs[0]["forked"] == T and runs[0]["started"] == T + 0.01 and runs[0]["stopped"] == T + 1.0
    assert runs[1]["waiting"] >= runs[0]["stopped"]
    assert [s["state"] for s in data["statuses"]] == ["ACTIVE", "CLEANING", "FINALIZING", "SUCCESS"]
