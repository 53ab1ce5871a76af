"""TaskObserver on synthetic checkpoints: incremental reads, task moves, and the summary cache."""

from __future__ import annotations

import json
import os

import pytest
from thermos.observer import summary_cache
from thermos.observer.observed_task import HEAD_SIZE
from thermos.observer.task_observer import TaskObserver, UnknownProcess, UnknownTask

from thermos.common.recordio import ThriftCodec
from thermos.gen.thermos.ttypes import ProcessState, RunnerCkpt, TaskState
from thermos.monitoring.detector import FixedPathDetector
from thermos.testing import ckpt as synth


def frame(record) -> bytes:
    payload = ThriftCodec(RunnerCkpt).encode(record)
    return len(payload).to_bytes(4, "big") + payload


def add_task(root, task_id, where="finished", records=None):
    os.makedirs(os.path.join(root, "tasks", where), exist_ok=True)
    with open(os.path.join(root, "tasks", where, task_id), "w") as fp:
        json.dump({"name": task_id + "_name", "processes": [{"name": "process_0"}]}, fp)
    records = list(records if records is not None else synth.runner_stream(
        processes=2, runs=2, task_id=task_id, sandbox=os.path.join(root, "sb", task_id)))
    path = os.path.join(root, "checkpoints", task_id, "runner")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "ab") as fp:
        for record in records:
            fp.write(frame(record))
    return path


def observer(root, state_dir=None):
    return TaskObserver(FixedPathDetector(str(root)), state_dir=str(state_dir) if state_dir else None,
                        resource_collection=False)


def active_records(task_id):
    return [synth.task_status(TaskState.ACTIVE), synth.header(task_id=task_id)]


def test_incremental_reads_follow_a_growing_checkpoint(tmp_path):
    path = add_task(tmp_path, "t1", "active", active_records("t1"))
    obs = observer(tmp_path)
    obs.refresh()
    buckets = obs.task("t1")["processes"]
    assert buckets == {b: [] for b in ("waiting", "running", "success", "failed", "killed")}
    size = os.path.getsize(path)
    run = synth.process_run("p", 0, terminal=ProcessState.FAILED, return_code=7)
    with open(path, "ab") as fp:
        fp.write(b"".join(frame(r) for r in run[:3]))
        torn = frame(run[3])
        fp.write(torn[:5])  # the runner is mid-append
    obs.refresh()
    assert obs.process("t1", "p")["state"] == "RUNNING"
    task = obs._tasks["t1"]
    assert task.offset == os.path.getsize(path) - 5 > size
    with open(path, "ab") as fp:
        fp.write(torn[5:])
    obs.refresh()
    assert obs.process("t1", "p") == {"process_name": "p", "process_run": 0, "state": "FAILED",
                                      "start_time": 1.7e9 + 0.01, "stop_time": 1.7e9 + 1.0, "return_code": 7}
    assert task.offset == os.path.getsize(path)


def test_tasks_move_and_vanish(tmp_path):
    add_task(tmp_path, "t1", "active", active_records("t1"))
    obs = observer(tmp_path)
    obs.refresh()
    assert obs.task_ids("active") == ("t1",) and obs.task_ids("finished") == ()
    os.makedirs(tmp_path / "tasks" / "finished")
    os.rename(tmp_path / "tasks" / "active" / "t1", tmp_path / "tasks" / "finished" / "t1")
    obs.refresh()
    assert obs.task_ids("finished") == ("t1",) and obs.task_type("t1") == "finished"
    os.unlink(tmp_path / "tasks" / "finished" / "t1")
    obs.refresh()
    assert obs.task_ids("all") == () and obs.task_id_count() == {"active": 0, "finished": 0, "all": 0}
    with pytest.raises(UnknownTask, match="Unknown task_id: t1"):
        obs.task("t1")


def test_a_corrupt_record_stops_reading_but_keeps_what_was_read(tmp_path):
    path = add_task(tmp_path, "t1", "active", active_records("t1"))
    with open(path, "ab") as fp:
        fp.write(b"\x00\x00\x00\x03abc" + frame(synth.task_status(TaskState.FAILED)))
    obs = observer(tmp_path)
    obs.refresh()
    task = obs.task("t1")
    assert task["state"] == "ACTIVE" and "is corrupt" in task["error"]
    with pytest.raises(UnknownProcess):
        obs.process("t1", "nope")


def test_a_checkpoint_replaced_under_a_reused_inode_is_read_from_the_start(tmp_path):
    path = add_task(tmp_path, "t1", "active", active_records("t1"))
    obs = observer(tmp_path)
    obs.refresh()
    os.unlink(path)
    add_task(tmp_path, "t1", "active", [synth.task_status(TaskState.ACTIVE, timestamp_ms=5_000),
                                        synth.header(task_id="t1", user="other")])
    obs.refresh()
    assert obs.task("t1")["user"] == "other" and obs.task("t1")["launch_timestamp"] == 5


# ---- the summary cache ---------------------------------------------------------------------


def overwrite_in_place(path: str, keep: int = 0) -> None:
    """Same inode, same size, different bytes after `keep`: only a reader that re-reads them notices."""
    size = os.path.getsize(path)
    with open(path, "r+b") as fp:
        fp.seek(keep)
        fp.write(b"\xff" * (size - keep))


def test_a_restart_serves_cached_state_without_rereading(tmp_path):
    state = tmp_path / "state"
    paths = [add_task(tmp_path / "root", "t%d" % i) for i in range(3)]
    first = observer(tmp_path / "root", state)
    first.start()
    before = first.tasks(["t0", "t1", "t2"])
    first.stop()
    assert os.path.exists(summary_cache.cache_path(str(state)))
    for path in paths:
        overwrite_in_place(path)
    second = observer(tmp_path / "root", state)
    second.start()
    try:
        assert second.tasks(["t0", "t1", "t2"]) == before
        assert second.task_ids() == first.task_ids()
    finally:
        second.stop()


def test_a_checkpoint_that_grew_is_read_from_the_cached_offset(tmp_path):
    state = tmp_path / "state"
    root = tmp_path / "root"
    path = add_task(root, "t1", "active", active_records("t1") + synth.process_run("p", 0)[:3])
    first = observer(root, state)
    first.start()
    first.stop()
    cached_size = os.path.getsize(path)
    overwrite_in_place(path, keep=HEAD_SIZE)  # what was read already must not be read again
    with open(path, "ab") as fp:
        fp.write(frame(synth.process_run("p", 0)[3]))
    assert os.path.getsize(path) > cached_size
    second = observer(root, state)
    second.start()
    try:
        assert second.process("t1", "p")["state"] == "SUCCESS"
        assert second.task("t1")["error"] is None
    finally:
        second.stop()


DAMAGED_CACHES = [
    b"not json at all",
    b'{"format": "thermos-observer-summary-cache", "version": 999, "tasks": []}',
    b'{"format": "x"}',
    b'{"format": "thermos-observer-summary-cache", "version": 2, '
    b'"tasks": [["r", "t", "active", 0, null, 0, null, "", "%%%", null, []]]}',
]


@pytest.mark.parametrize("damage", DAMAGED_CACHES)
def test_a_corrupt_or_foreign_cache_is_rebuilt(tmp_path, damage, caplog):
    state = tmp_path / "state"
    add_task(tmp_path / "root", "t1")
    os.makedirs(state)
    with open(summary_cache.cache_path(str(state)), "wb") as fp:
        fp.write(damage)
    obs = observer(tmp_path / "root", state)
    obs.start()
    assert obs.task("t1")["state"] == "SUCCESS"
    obs.stop()
    assert "it will be rebuilt" in caplog.text
    rebuilt = summary_cache.load(str(state))
    assert list(rebuilt) == [(str(tmp_path / "root"), "t1")]
