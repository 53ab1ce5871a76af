import os
import time

import pytest

from tests.monitoring.fixtures import make_task
from thermos.monitoring.detector import FixedPathDetector, TaskDetector
from thermos.monitoring.garbage import GarbageCollectionPolicy, TaskGarbageCollector

NOW = 2_000_000_000.0
DAY = 86400.0


def policy(root, **kw):
    return GarbageCollectionPolicy(FixedPathDetector(root), clock=lambda: NOW, **kw)


def ids(tasks):
    return [task.task_id for task in tasks]


@pytest.fixture
def root(tmp_path):
    """Five finished tasks, t0 oldest (5 days) .. t4 newest (1 day), each ~100 KB of data; one active."""
    root = str(tmp_path / "root")
    for i in range(5):
        make_task(root, "t%d" % i, state="finished", data_bytes=100_000, mtime=NOW - (5 - i) * DAY)
    make_task(root, "running", state="active", data_bytes=100_000, mtime=NOW - 30 * DAY)
    return root


def test_no_limits_collect_nothing(root):
    assert policy(root).run() == []


def test_age_collects_only_the_old_ones(root):
    assert ids(policy(root, max_age=3.5 * DAY).run()) == ["t0", "t1"]


def test_count_keeps_the_newest(root):
    assert ids(policy(root, max_tasks=2).run()) == ["t0", "t1", "t2"]
    assert ids(policy(root, max_tasks=0).run()) == ["t0", "t1", "t2", "t3", "t4"]


def test_space_budget_keeps_the_newest_and_collects_the_oldest(root):
    per_task = TaskGarbageCollector(root, "t4").data_size()
    assert 100_000 <= per_task < 120_000
    chosen = policy(root, max_space=int(2.5 * per_task), include_metadata=False, include_logs=False).run()
    assert ids(chosen) == ["t0", "t1", "t2"]
    assert all(task.data_size == per_task for task in chosen)


def test_space_counts_logs_and_metadata_only_when_they_will_be_deleted(root):
    c = TaskGarbageCollector(root, "t4")
    data, logs, metadata = c.data_size(), c.log_size(), c.metadata_size()
    assert logs > 0 and metadata > 0
    budget = 2 * data + logs  # fits two tasks' data, but not two tasks' data + logs
    assert ids(policy(root, max_space=budget, include_logs=False, include_metadata=False).run()) == [
        "t0", "t1", "t2"]
    assert ids(policy(root, max_space=budget, include_logs=True, include_metadata=False).run()) == [
        "t0", "t1", "t2", "t3"]


def test_policies_combine(root):
    assert ids(policy(root, max_age=4.5 * DAY, max_tasks=3).run()) == ["t0", "t1"]
    assert ids(policy(root, max_age=4.5 * DAY, max_tasks=2).run()) == ["t0", "t1", "t2"]


def test_an_active_task_is_never_collected(root):
    # Also when a stale finished record sits beside the active one.
    make_task(root, "running", state="finished", mtime=NOW - 30 * DAY)
    for chosen in (policy(root, max_age=0).run(), policy(root, max_tasks=0).run(),
                   policy(root, max_space=0).run()):
        assert "running" not in ids(chosen)
    with pytest.raises(TaskGarbageCollector.ActiveTask):
        TaskGarbageCollector(root, "running").erase_data()


def test_tasks_are_plain_ids_with_their_root(root):
    [task] = policy(root, max_age=4.5 * DAY).run()
    assert task.checkpoint_root == root and task.task_id == "t0"
    assert task.age == pytest.approx(5 * DAY)


def test_bad_limits_are_refused(root):
    with pytest.raises(ValueError):
        policy(root, max_age=-1)
    with pytest.raises(TypeError):
        GarbageCollectionPolicy(root)


def test_erase_data_keeps_logs_inside_the_sandbox(root):
    c = TaskGarbageCollector(root, "t0")
    sandbox = c.header.sandbox
    logs = list(c.get_logs(with_size=False))
    assert logs and all(path.startswith(sandbox) for path in logs)
    c.erase_data()
    assert not os.path.exists(os.path.join(sandbox, "data.bin"))
    assert all(os.path.exists(path) for path in logs)
    c.erase_logs()
    assert not os.path.exists(sandbox)  # nothing was left in it
    c.erase_metadata()
    assert not os.path.exists(os.path.join(root, "checkpoints", "t0"))
    assert ("finished", "t0") not in list(TaskDetector(root).get_task_ids())


def test_erase_task_removes_everything(root):
    c = TaskGarbageCollector(root, "t1")
    sandbox = c.header.sandbox
    c.erase_task()
    assert not os.path.exists(sandbox)
    assert list(c.get_metadata(with_size=False)) and not any(
        os.path.exists(p) for p in c.get_metadata(with_size=False))


def test_missing_task_has_age_zero_and_only_metadata_paths(tmp_path):
    c = TaskGarbageCollector(str(tmp_path), "ghost")
    assert c.get_age() == 0
    assert [os.path.basename(p) for p, _ in c.get_metadata()] == ["ghost", "runner"]
    assert list(c.get_logs()) == [] and list(c.get_data()) == []
    c.erase_task()  # nothing to do, no error


def test_a_checkpoint_naming_a_dangerous_sandbox_is_refused(tmp_path):
    root = str(tmp_path)
    make_task(root, "evil", state="finished", sandbox="/")
    c = TaskGarbageCollector(root, "evil")
    with pytest.raises(TaskGarbageCollector.UnsafePath):
        c.erase_data()
    assert os.path.isdir("/usr")


def test_selection_does_not_measure_sizes_without_a_space_budget(root, monkeypatch):
    def boom(self):
        raise AssertionError("sizes measured")

    monkeypatch.setattr(TaskGarbageCollector, "data_size", boom)
    started = time.perf_counter()
    assert ids(policy(root, max_tasks=1).run()) == ["t0", "t1", "t2", "t3"]
    assert time.perf_counter() - started < 1.0
