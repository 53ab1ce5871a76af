import os

from thermos.core.inspector import CheckpointInspector
from thermos.gen.thermos.ttypes import ProcessState, TaskState
from thermos.testing import ckpt as synth


def test_inspection_collects_runners_coordinators_and_processes(tmp_path):
    root = str(tmp_path)
    runner = os.path.join(root, "checkpoints", "t", "runner")
    run0 = synth.process_run("p", first_seq=0, t=100.0, pid=500, terminal=ProcessState.FAILED)
    run1 = synth.process_run("p", first_seq=4, t=200.0, pid=600)
    synth.write_stream(runner, [synth.task_status(TaskState.ACTIVE, timestamp_ms=1, runner_pid=10),
                                synth.header(task_id="t", user="root", uid=0)] + run0 + [
        synth.task_status(TaskState.ACTIVE, timestamp_ms=2, runner_pid=10),
        synth.task_status(TaskState.ACTIVE, timestamp_ms=3, runner_pid=11)] + run1)
    # The coordinator checkpoint knows one more, later record than the runner saw.
    synth.write_stream(os.path.join(root, "checkpoints", "t", "coordinator.p"),
                       run0[1:] + run1[1:] + synth.process_run("p", first_seq=8, t=300.0, pid=700)[1:3])

    inspection = CheckpointInspector(root).inspect("t")
    assert inspection.runner_processes == [(10, 0, 1), (11, 0, 3)]
    assert inspection.coordinator_processes == {(500, 0, 100.0), (600, 0, 200.0), (700, 0, 300.0)}
    assert inspection.processes == {(501, 0, 100.01), (601, 0, 200.01), (701, 0, 300.01)}
    assert inspection.runner_latest_update == 201.0  # the stop time of run 1
    assert inspection.process_latest_update == 300.01  # run 2 started, seen only by the coordinator


def test_unknown_user_falls_back_to_the_recorded_uid(tmp_path):
    root = str(tmp_path)
    runner = os.path.join(root, "checkpoints", "t", "runner")
    synth.write_stream(runner, [synth.task_status(TaskState.ACTIVE),
                                synth.header(task_id="t", user="no-such-user-xyz", uid=4321)]
                       + synth.process_run("p", first_seq=0, pid=50))
    inspection = CheckpointInspector(root).inspect("t")
    assert inspection.processes == {(51, 4321, 1.7e9 + 0.01)}


def test_missing_or_corrupt_checkpoint_gives_none(tmp_path):
    root = str(tmp_path)
    assert CheckpointInspector(root).inspect("missing") is None
    runner = os.path.join(root, "checkpoints", "bad", "runner")
    synth.write_stream(runner, [synth.task_status(TaskState.ACTIVE)])
    with open(runner, "ab") as fp:
        fp.write(b"\x00\x00\x00\x03\xff\xff\xff")
    synth.write_stream(runner, [synth.task_status(TaskState.ACTIVE)])
    assert CheckpointInspector(root).inspect("bad") is None
