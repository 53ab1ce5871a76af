import os

import pytest

from tests.monitoring.fixtures import make_task
from thermos.common.constants import DEFAULT_CHECKPOINT_ROOT
from thermos.monitoring.detector import (
    ChainedPathDetector,
    FixedPathDetector,
    MesosPathDetector,
    TaskDetector,
)


def test_empty_root_has_no_tasks_but_knows_where_checkpoints_go(tmp_path):
    detector = TaskDetector(str(tmp_path))
    assert list(detector.get_task_ids()) == []
    assert detector.get_checkpoint("t") == os.path.join(str(tmp_path), "checkpoints", "t", "runner")
    assert detector.get_process_checkpoints("t") == []
    assert list(detector.get_process_runs("t", str(tmp_path / "nope"))) == []


def test_finds_tasks_checkpoints_runs_and_logs(tmp_path):
    root = str(tmp_path)
    make_task(root, "active_task", state="active", processes=1)
    sandbox = make_task(root, "finished_task", state="finished", processes=2, runs=2)
    detector = TaskDetector(root)

    assert list(detector.get_task_ids()) == [("active", "active_task"), ("finished", "finished_task")]
    assert list(detector.get_task_ids(state="active")) == [("active", "active_task")]
    assert list(detector.get_task_ids(state="finished")) == [("finished", "finished_task")]
    assert [os.path.basename(p) for p in detector.get_process_checkpoints("finished_task")] == [
        "coordinator.process_0",
        "coordinator.process_1",
    ]

    log_dir = os.path.join(sandbox, ".logs")
    assert list(detector.get_process_runs("finished_task", log_dir)) == [
        ("process_0", 0),
        ("process_0", 1),
        ("process_1", 0),
        ("process_1", 1),
    ]
    logs = list(detector.get_process_logs("finished_task", log_dir))
    assert len(logs) == 8 and all(os.path.exists(p) for p in logs)


def test_runs_are_numbers_sorted_numerically(tmp_path):
    for run in ("2", "10", "junk"):
        os.makedirs(tmp_path / "logs" / "p" / run)
    assert list(TaskDetector(str(tmp_path)).get_process_runs("t", str(tmp_path / "logs"))) == [
        ("p", 2),
        ("p", 10),
    ]


def test_fixed_and_chained_detectors():
    assert FixedPathDetector().get_paths() == [DEFAULT_CHECKPOINT_ROOT]
    assert FixedPathDetector("/a").get_paths() == ["/a"]
    with pytest.raises(TypeError):
        FixedPathDetector(123)
    chained = ChainedPathDetector(FixedPathDetector("/a"), FixedPathDetector("/b"), FixedPathDetector("/a"))
    assert chained.get_paths() == ["/a", "/b"]
    with pytest.raises(TypeError):
        ChainedPathDetector("/a")


def make_mesos_run(work_dir, slave, framework, executor, run, with_checkpoints=True):
    run_dir = os.path.join(
        work_dir, "slaves", slave, "frameworks", framework, "executors", executor, "runs", run
    )
    os.makedirs(run_dir)
    if with_checkpoints:
        os.makedirs(os.path.join(run_dir, "checkpoints"))
    return run_dir


def test_mesos_detector_skips_latest_symlinks(tmp_path):
    work_dir = str(tmp_path)
    old = make_mesos_run(work_dir, "S0", "F0", "thermos-a", "c-old")
    new = make_mesos_run(work_dir, "S0", "F0", "thermos-a", "c-new")
    other = make_mesos_run(work_dir, "S0", "F0", "thermos-b", "c-b")
    make_mesos_run(work_dir, "S0", "F0", "thermos-c", "c-no-ckpt", with_checkpoints=False)
    os.symlink("c-new", os.path.join(os.path.dirname(new), "latest"))
    os.symlink("c-b", os.path.join(os.path.dirname(other), "latest"))
    os.symlink("S0", os.path.join(work_dir, "slaves", "latest"))

    paths = MesosPathDetector(work_dir).get_paths()
    assert sorted(paths) == sorted(os.path.join(p, "checkpoints") for p in (old, new, other))
    assert not any("latest" in p for p in paths)


def test_mesos_detector_on_missing_work_dir_finds_nothing(tmp_path):
    assert MesosPathDetector(str(tmp_path / "missing")).get_paths() == []


def test_tasks_inside_a_mesos_run_are_found_through_the_chain(tmp_path):
    run = make_mesos_run(str(tmp_path / "mesos"), "S0", "F0", "thermos-a", "c1")
    make_task(os.path.join(run, "checkpoints"), "mesos_task", state="finished")
    make_task(str(tmp_path / "plain"), "plain_task", state="active")
    chain = ChainedPathDetector(
        FixedPathDetector(str(tmp_path / "plain")), MesosPathDetector(str(tmp_path / "mesos"))
    )
    found = [
        (task_id, state) for root in chain.get_paths() for state, task_id in TaskDetector(root).get_task_ids()
    ]
    assert found == [("plain_task", "active"), ("mesos_task", "finished")]
