"""Resource limits measured on real sandboxes and real processes through the runner checkpoint."""

import os
import re
import subprocess
import sys

import psutil
import pytest
from thermos.executor.checkers.base import TASK_FAILED
from thermos.executor.checkers.resources import ResourceManagerProvider
from thermos.executor.task_info import decode_assigned_task, executor_task_from_assigned_task

from tests.executor.parts.payloads import mesos_job, task_info_data, thermos_task
from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt, TaskState
from thermos.testing.ckpt import header, task_status, write_stream
from thermos.testing.wait import wait_until

MB = 1024 * 1024


def task_with(ram=64 * MB, disk=MB, task_id="res-task"):
    resources = {"cpu": 1.0, "ram": ram, "disk": disk}
    job = mesos_job(thermos_task(("hog", "hog"), resources=resources))
    return executor_task_from_assigned_task(decode_assigned_task(task_info_data(job, task_id=task_id)))


@pytest.fixture
def running_task(tmp_path):
    """A checkpoint whose only process is RUNNING as a real process holding ~64 MB of RSS."""
    root, sandbox = tmp_path / "root", tmp_path / "sandbox"
    sandbox.mkdir()
    code = ("import sys; b = bytearray(64 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); "
            "print('ready', flush=True); sys.stdin.read()")
    hog = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert hog.stdout.readline() == b"ready\n"
    started = psutil.Process(hog.pid).create_time()
    records = [task_status(TaskState.ACTIVE), header(task_id="res-task", sandbox=str(sandbox))]
    records += [RunnerCkpt(process_status=s) for s in (
        ProcessStatus(seq=0, process="hog", state=ProcessState.WAITING),
        ProcessStatus(seq=1, process="hog", state=ProcessState.FORKED, fork_time=started,
                      coordinator_pid=hog.pid),
        ProcessStatus(seq=2, process="hog", state=ProcessState.RUNNING, start_time=started, pid=hog.pid))]
    write_stream(os.path.join(root, "checkpoints", "res-task", "runner"), records)
    yield str(root), sandbox
    hog.kill()
    hog.wait()


def provider(root, **kw):
    return ResourceManagerProvider(root, process_collection_interval=0.05, disk_collection_interval=0.05,
                                   **kw)


def test_disk_over_the_reservation_fails_the_task(running_task):
    root, sandbox = running_task
    manager = provider(root).from_task(task_with(disk=MB), str(sandbox))
    manager.start()
    try:
        assert manager.status is None
        (sandbox / "big").write_bytes(os.urandom(3 * MB))
        wait_until(lambda: manager.status is not None, timeout=30)
        result = manager.status
        assert result.status == TASK_FAILED
        match = re.fullmatch(r"Disk limit exceeded\.  Reserved 1048576 bytes vs used (\d+) bytes\.",
                             result.reason)
        assert match and int(match.group(1)) >= 3 * MB
        assert manager.metrics()["disk_reserved"] == MB
    finally:
        manager.stop()


def test_memory_is_enforced_only_when_asked(running_task):
    root, _ = running_task
    watching = provider(root).from_task(task_with(ram=16 * MB, disk=1024 * MB), None)
    enforcing = provider(root, enforce_memory=True).from_task(task_with(ram=16 * MB, disk=1024 * MB), None)
    watching.start()
    enforcing.start()
    try:
        wait_until(lambda: enforcing.status is not None, timeout=30)
        match = re.fullmatch(r"Memory limit exceeded\.  Reserved 16777216 bytes vs used (\d+) bytes\.",
                             enforcing.status.reason)
        assert match and int(match.group(1)) >= 64 * MB
        # Both sample in the background; the watcher's first sample may come after the verdict.
        wait_until(lambda: watching.metrics()["ram_used"] >= 64 * MB, timeout=30)
        assert watching.status is None
    finally:
        watching.stop()
        enforcing.stop()


def test_no_resources_no_manager(tmp_path):
    job = mesos_job(thermos_task(("hello", "echo")))
    del job["task"]["resources"]
    task = executor_task_from_assigned_task(decode_assigned_task(task_info_data(job)))
    assert ResourceManagerProvider(str(tmp_path)).from_task(task, None) is None
