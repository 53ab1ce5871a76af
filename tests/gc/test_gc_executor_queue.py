"""GcExecutor's request queue and lifecycle (spec §5's test assertions), with a recording driver.

The executor is real; only the link to the agent is a recorder, and the host scanner is a real
one over an empty root whose scan can be held, so that "a GC is running" is a state the test
controls instead of a race.
"""

import os
import threading

import pytest
from thermos.gc.detect import HostScanner
from thermos.gc.executor import (
    FINISHED,
    KILLED_QUEUED,
    SHUTTING_DOWN,
    SKIPPED_NEWER,
    SKIPPED_SHUTDOWN,
    UNDECODABLE,
    GcExecutor,
    encode_retained,
)

from thermos.monitoring.detector import FixedPathDetector
from thermos.testing.wait import wait_until


class RecordingDriver:
    def __init__(self):
        self.updates = []
        self.stopped = threading.Event()

    def send_status_update(self, task_id, state, message=None, **kw):
        self.updates.append((task_id, state, message))

    def wait_acknowledged(self, timeout):
        return True

    def stop(self):
        self.stopped.set()


class HeldScanner(HostScanner):
    """Scans really, but the first scan waits until the test releases it."""

    def __init__(self, root):
        super().__init__(FixedPathDetector(root))
        self.entered = threading.Event()
        self.release = threading.Event()
        self.scans = 0

    def scan_batches(self, *args, **kwargs):
        self.scans += 1
        self.entered.set()
        assert self.release.wait(30)
        return super().scan_batches(*args, **kwargs)


def task(task_id, retained=None, data=None):
    from thermos.executor.driver import encode_data

    payload = encode_retained(retained or {}) if data is None else data
    return {"task_id": {"value": task_id}, "data": encode_data(payload)}


@pytest.fixture
def gc(tmp_path):
    scanner = HeldScanner(str(tmp_path))
    executor = GcExecutor(scanner, idle_timeout=60, poll_wait=60)
    driver = RecordingDriver()
    worker = threading.Thread(target=executor.run, args=(driver,), daemon=True)
    worker.start()
    yield executor, driver, scanner
    scanner.release.set()
    executor.shutdown(driver)
    worker.join(timeout=30)


def test_three_launches_while_one_runs_keep_one_queued_and_finish_the_dropped(gc):
    executor, driver, scanner = gc
    executor.launchTask(driver, task("gc-1"))
    assert scanner.entered.wait(30)  # gc-1 is running now
    for name in ("gc-2", "gc-3", "gc-4"):
        executor.launchTask(driver, task(name))
    assert driver.updates == [("gc-2", "TASK_FINISHED", SKIPPED_NEWER),
                              ("gc-3", "TASK_FINISHED", SKIPPED_NEWER)]
    assert executor.dropped_tasks == 2
    executor.launchTask(driver, task("gc-1"))  # already running: ignored
    scanner.release.set()
    wait_until(lambda: ("gc-4", "TASK_FINISHED", FINISHED) in driver.updates, timeout=30)
    assert ("gc-1", "TASK_FINISHED", FINISHED) in driver.updates
    assert scanner.scans == 2


def test_kill_dequeues_a_queued_gc_and_ignores_a_running_or_unknown_one(gc):
    executor, driver, scanner = gc
    executor.launchTask(driver, task("gc-1"))
    assert scanner.entered.wait(30)
    executor.launchTask(driver, task("gc-2"))
    executor.killTask(driver, "gc-2")
    executor.killTask(driver, "gc-1")
    executor.killTask(driver, "nobody")
    assert driver.updates == [("gc-2", "TASK_KILLED", KILLED_QUEUED)]
    scanner.release.set()
    wait_until(lambda: ("gc-1", "TASK_FINISHED", FINISHED) in driver.updates, timeout=30)
    assert scanner.scans == 1 and not driver.stopped.is_set()


def test_shutdown_finishes_the_running_gc_skips_the_queued_one_and_refuses_new_ones(gc):
    executor, driver, scanner = gc
    executor.launchTask(driver, task("gc-1"))
    assert scanner.entered.wait(30)
    executor.launchTask(driver, task("gc-2"))
    executor.shutdown(driver)
    executor.launchTask(driver, task("gc-3"))
    scanner.release.set()
    assert driver.stopped.wait(30)
    assert driver.updates == [("gc-3", "TASK_FAILED", SHUTTING_DOWN), ("gc-1", "TASK_FINISHED", FINISHED),
                              ("gc-2", "TASK_FINISHED", SKIPPED_SHUTDOWN)]
    assert executor.exit_reason == "shut down by the agent"


def test_bad_data_fails_only_that_task(gc):
    executor, driver, scanner = gc
    executor.launchTask(driver, task("gc-bad", data=b"\xff\x00garbage"))
    assert driver.updates == [("gc-bad", "TASK_FAILED", UNDECODABLE)]
    assert not scanner.entered.is_set()


def test_idle_and_lifetime_limits_end_the_executor(tmp_path):
    for kwargs, reason in (({"idle_timeout": 0.2}, "idle for 0 s"),
                           ({"max_lifetime": 0.2}, "reached the maximum lifetime of 0 s")):
        driver = RecordingDriver()
        executor = GcExecutor(HostScanner(FixedPathDetector(str(tmp_path))), poll_wait=60, **kwargs)
        worker = threading.Thread(target=executor.run, args=(driver,), daemon=True)
        worker.start()
        assert driver.stopped.wait(30)
        worker.join(timeout=30)
        assert executor.exit_reason == reason


def test_between_requests_dead_runners_are_marked_lost(tmp_path):
    """Aurora's clean_orphans: an ACTIVE checkpoint whose runner is gone, untouched for the orphan age."""
    import time

    from thermos.gc.decide import GcPolicy

    from tests.monitoring.fixtures import make_task
    from thermos.common.ckpt import CheckpointDispatcher
    from thermos.gen.thermos.ttypes import TaskState

    root = str(tmp_path / "root")
    make_task(root, "orphan", state="active", mtime=time.time() - 7200)  # its runner pid is long gone
    make_task(root, "recent", state="active", mtime=time.time())
    driver = RecordingDriver()
    executor = GcExecutor(HostScanner(FixedPathDetector(root)), GcPolicy(orphan_age=3600), poll_wait=0.05,
                          idle_timeout=60)
    worker = threading.Thread(target=executor.run, args=(driver,), daemon=True)
    worker.start()
    try:
        wait_until(lambda: driver.updates, timeout=30)
    finally:
        executor.shutdown(driver)
        worker.join(timeout=30)
    assert driver.updates[0] == ("orphan", "TASK_LOST", "GC executor detected failed task runner.")
    state = CheckpointDispatcher.from_file(os.path.join(root, "checkpoints", "orphan", "runner"))
    assert state.statuses[-1].state == TaskState.LOST
    assert os.path.exists(os.path.join(root, "tasks", "finished", "orphan"))
    assert os.path.exists(os.path.join(root, "tasks", "active", "recent"))
    assert all(update[0] != "recent" for update in driver.updates)
