import os
import threading

from tests.monitoring.fixtures import make_task
from thermos.common.path import TaskPath
from thermos.common.recordio import HEADER
from thermos.gen.thermos.ttypes import ProcessState, TaskState
from thermos.monitoring.monitor import TaskMonitor
from thermos.testing import ckpt as synth


def ckpt_path(root, task_id="t"):
    return os.path.join(root, "checkpoints", task_id, "runner")


def test_missing_checkpoint_is_an_empty_active_task(tmp_path):
    monitor = TaskMonitor(str(tmp_path), "t")
    assert monitor.refresh() is False
    assert monitor.task_state() == TaskState.ACTIVE
    assert monitor.get_sandbox() is None
    assert monitor.get_active_processes() == []
    assert monitor.error is None
    assert not monitor.active and not monitor.finished


def test_follows_a_checkpoint_as_it_grows(tmp_path):
    path = ckpt_path(str(tmp_path))
    synth.write_stream(path, [synth.task_status(TaskState.ACTIVE), synth.header(task_id="t", sandbox="/sb")])
    monitor = TaskMonitor(str(tmp_path), "t")
    assert monitor.get_sandbox() == "/sb"
    assert monitor.get_active_processes() == []

    run = synth.process_run("p", first_seq=0)
    synth.write_stream(path, run[:3])
    assert monitor.refresh() is True
    [(status, run_index)] = monitor.get_active_processes()
    assert (status.process, status.state, run_index) == ("p", ProcessState.RUNNING, 0)
    assert monitor.refresh() is False

    synth.write_stream(path, run[3:] + [synth.task_status(TaskState.SUCCESS)])
    assert monitor.get_active_processes() == []
    assert monitor.task_state() == TaskState.SUCCESS


def test_torn_tail_is_invisible_until_completed(tmp_path):
    path = ckpt_path(str(tmp_path))
    synth.write_stream(path, [synth.task_status(TaskState.ACTIVE), synth.header(task_id="t")])
    probe = str(tmp_path / "probe")
    synth.write_stream(probe, [synth.task_status(TaskState.FAILED)])
    frame = open(probe, "rb").read()
    with open(path, "ab") as fp:
        fp.write(frame[:7])
    monitor = TaskMonitor(str(tmp_path), "t")
    assert monitor.task_state() == TaskState.ACTIVE and monitor.error is None
    with open(path, "ab") as fp:
        fp.write(frame[7:])
    assert monitor.task_state() == TaskState.FAILED


def test_mid_stream_corruption_keeps_the_good_prefix_and_says_where(tmp_path):
    path = ckpt_path(str(tmp_path))
    synth.write_stream(path, [synth.task_status(TaskState.ACTIVE), synth.header(task_id="t", sandbox="/sb")])
    good = os.path.getsize(path)
    with open(path, "ab") as fp:
        fp.write(HEADER.pack(3) + b"\xff\xff\xff")
    synth.write_stream(path, [synth.task_status(TaskState.SUCCESS)])
    monitor = TaskMonitor(str(tmp_path), "t")
    assert monitor.get_sandbox() == "/sb"
    assert monitor.task_state() == TaskState.ACTIVE
    assert path in monitor.error and "byte %d" % good in monitor.error


def test_rejected_transition_stops_the_replay(tmp_path):
    path = ckpt_path(str(tmp_path))
    run = synth.process_run("p", first_seq=0)
    synth.write_stream(path, [synth.task_status(TaskState.ACTIVE), synth.header(task_id="t"), run[0], run[2]])
    monitor = TaskMonitor(str(tmp_path), "t")
    assert monitor.get_state().processes["p"][-1].state == ProcessState.WAITING
    assert "expected sequence number 1, got 2" in monitor.error


def test_accepts_a_taskpath_like_older_callers(tmp_path):
    root = str(tmp_path)
    make_task(root, "t", state="active")
    monitor = TaskMonitor(TaskPath(root=root), "t")
    assert monitor.active and not monitor.finished
    assert len(monitor.get_active_processes()) == 2


def test_get_state_is_a_private_copy(tmp_path):
    make_task(str(tmp_path), "t", state="finished")
    monitor = TaskMonitor(str(tmp_path), "t")
    state = monitor.get_state()
    state.processes["process_0"][-1].state = ProcessState.LOST
    state.header.ports["x"] = 1
    again = monitor.get_state()
    assert again.processes["process_0"][-1].state == ProcessState.SUCCESS
    assert "x" not in again.header.ports


def test_concurrent_readers_see_every_record_once(tmp_path):
    path = ckpt_path(str(tmp_path))
    synth.write_stream(path, [synth.task_status(TaskState.ACTIVE), synth.header(task_id="t")])
    monitor = TaskMonitor(str(tmp_path), "t")
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            try:
                monitor.get_state()
                monitor.get_active_processes()
            except Exception as err:  # pragma: no cover - the assertion below reports it
                errors.append(err)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for i in range(50):
        synth.write_stream(path, synth.process_run("p%d" % i, first_seq=0))
    stop.set()
    for thread in threads:
        thread.join(10)
    assert errors == [] and monitor.error is None
    state = monitor.get_state()
    assert len(state.processes) == 50
    assert all(runs[-1].state == ProcessState.SUCCESS and len(runs) == 1 for runs in state.processes.values())
