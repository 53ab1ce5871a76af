"""The kill intent is recorded: a runner restarted mid-stop ends the task as it was asked to,
and the extra fields stay invisible to readers built from Aurora's IDL."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.recordio import ThriftRecordReader, ThriftRecordWriter
from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt, TaskState, TaskStatus
from thermos.testing.runner import RunnerHarness

from .runner_util import S, assert_states_agree, proc, states, task, wait_until

IDL = os.path.join(os.path.dirname(__file__), "..", "..", "thermos", "gen", "thermos.thrift")


def append(path: str, record: RunnerCkpt) -> None:
    with open(path, "ab") as fp:
        ThriftRecordWriter(fp).write(record)


def test_a_recorded_lost_stop_ends_lost_after_a_restart(tmp_path):
    """A runner that died right after recording a LOST stop (SIGUSR2) is replaced by one that
    ends the task LOST; before the intent was recorded it inferred KILLED."""
    harness = RunnerHarness(task(proc("sleeper", "exec sleep 300")), root=str(tmp_path))
    runner = harness.start()
    harness.wait_for_running("sleeper")
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    append(harness.runner_checkpoint, RunnerCkpt(task_status=TaskStatus(
        state=TaskState.CLEANING, timestamp_ms=int(time.time() * 1000), runner_pid=runner.pid,
        runner_uid=os.getuid(), requested_state=TaskState.LOST,
        preemption_deadline_ms=int(time.time() * 1000))))
    result = harness.run(timeout=60)
    assert result.returncode == 0, result.stderr
    assert_states_agree(result)
    assert result.task_state == TaskState.LOST
    assert states(result, "sleeper")[-1] == S.KILLED


def test_the_kill_records_its_intent_and_deadline(tmp_path):
    harness = RunnerHarness(task(proc("sleeper", "exec sleep 300")), root=str(tmp_path))
    runner = harness.start()
    harness.wait_for_running("sleeper")
    before = time.time()
    os.kill(runner.pid, signal.SIGUSR2)
    result = harness.finish(runner, timeout=60)
    cleaning = [s for s in result.reconstructed_state.statuses if s.state == TaskState.CLEANING]
    assert len(cleaning) == 1
    assert cleaning[0].requested_state == TaskState.LOST
    assert before * 1000 - 1000 <= cleaning[0].preemption_deadline_ms <= time.time() * 1000 + 1000
    assert result.task_state == TaskState.LOST


def test_a_skipped_sequence_number_is_dropped_loudly_the_same_way_on_takeover(tmp_path):
    """One rule for the run loop and a takeover: the record is not copied (a replay could not
    apply it), an error line names it, and the run ends LOST once its coordinator is gone."""
    harness = RunnerHarness(task(proc("p", "exec sleep 300")), root=str(tmp_path))
    runner = harness.start()
    run = harness.wait_for_running("p")
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    coordinator_ckpt = harness.pathspec.given(process="p").getpath("process_checkpoint")
    append(coordinator_ckpt, RunnerCkpt(process_status=ProcessStatus(
        seq=run.seq + 5, process="p", state=ProcessState.SUCCESS, return_code=0, stop_time=time.time())))
    again = harness.start()
    wait_until(lambda: "Dropping SUCCESS record %d of process p" % (run.seq + 5)
               in RunnerHarness.output(again)[1], timeout=30)
    os.kill(again.pid, signal.SIGUSR1)
    result = harness.finish(again, timeout=60)
    assert_states_agree(result)
    assert result.task_state == TaskState.KILLED


@pytest.fixture(scope="module")
def aurora_types(tmp_path_factory):
    """Python types generated from Aurora's IDL: ours without the Thermos-only fields."""
    if shutil.which("thrift") is None:
        pytest.skip("needs the thrift compiler")
    work = tmp_path_factory.mktemp("aurora_idl")
    with open(IDL) as fp:
        text = fp.read()
    aurora = re.sub(r"\n\s*3[23]: optional [^\n]*", "", text).replace(
        "namespace py thermos.gen.thermos", "namespace py aurora_reader")
    assert "requested_state" not in aurora
    (work / "aurora.thrift").write_text(aurora)
    subprocess.run(["thrift", "--gen", "py", "-out", str(work), str(work / "aurora.thrift")], check=True)
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module("aurora_reader.ttypes")
    finally:
        sys.path.remove(str(work))


def test_an_aurora_built_reader_decodes_checkpoints_with_the_intent(tmp_path, aurora_types):
    harness = RunnerHarness(task(proc("sleeper", "exec sleep 300")), root=str(tmp_path))
    runner = harness.start()
    harness.wait_for_running("sleeper")
    os.kill(runner.pid, signal.SIGUSR1)
    assert harness.finish(runner, timeout=90).task_state == TaskState.KILLED
    ours = list(CheckpointDispatcher.iter_updates(harness.runner_checkpoint))
    with open(harness.runner_checkpoint, "rb") as fp:
        theirs = list(ThriftRecordReader(fp, aurora_types.RunnerCkpt))
    assert len(theirs) == len(ours)
    statuses = [(r.task_status.state, r.task_status.timestamp_ms, r.task_status.runner_pid)
                for r in theirs if r.task_status is not None]
    assert statuses == [(r.task_status.state, r.task_status.timestamp_ms, r.task_status.runner_pid)
                        for r in ours if r.task_status is not None]
    assert any(r.task_status is not None and r.task_status.requested_state == TaskState.KILLED for r in ours)
    assert not hasattr(aurora_types.TaskStatus(), "requested_state")
