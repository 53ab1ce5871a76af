"""TaskRunnerHelper: pid verification (spec §12 core/test_helper.py), scans, kills, task records."""

import collections
import contextlib
import os
import signal
import subprocess
import time

import psutil
import pytest

from thermos.common.path import TaskPath
from thermos.core.helper import TaskRunnerHelper
from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerHeader, RunnerState

DRIFT = TaskRunnerHelper.MAX_START_TIME_DRIFT
Uids = collections.namedtuple("Uids", "real effective saved")


class FakeProcess:
    def __init__(self, create_time=100.0, uid=1000, username="alice", uids_raise=None, name_raise=None):
        self._create_time, self._uid, self._username = create_time, uid, username
        self._uids_raise, self._name_raise = uids_raise, name_raise

    def create_time(self):
        return self._create_time

    def uids(self):
        if self._uids_raise:
            raise self._uids_raise
        return None if self._uid is None else Uids(self._uid, self._uid, self._uid)

    def username(self):
        if self._name_raise:
            raise self._name_raise
        return self._username


really = TaskRunnerHelper.this_is_really_our_pid


def test_root_launched_process_may_have_dropped_privileges():
    assert really(FakeProcess(uid=1000), 0, "root", 100.0)


def test_matching_uid_within_start_time_drift():
    assert really(FakeProcess(), 1000, "alice", 100.0)
    assert really(FakeProcess(), 1000, "alice", 100.0 + DRIFT - 1)
    assert not really(FakeProcess(), 1000, "alice", 100.0 + DRIFT + 1)
    assert not really(FakeProcess(), 1000, "alice", 100.0 - DRIFT - 1)


def test_uid_decides_over_user_name():
    assert really(FakeProcess(username="bob"), 1000, "alice", 100.0)
    assert not really(FakeProcess(uid=1001), 1000, "alice", 100.0)


def test_without_uid_the_user_name_decides():
    assert really(FakeProcess(), None, "alice", 100.0)
    assert not really(FakeProcess(username="bob"), None, "alice", 100.0)
    assert not really(FakeProcess(name_raise=KeyError("x")), None, "alice", 100.0)
    assert really(FakeProcess(name_raise=KeyError("x")), 1000, "alice", 100.0)


def test_process_without_uids_is_rejected_when_a_uid_is_expected():
    assert not really(FakeProcess(uid=None), 1000, "alice", 100.0)
    assert not really(FakeProcess(uids_raise=psutil.AccessDenied(1)), 1000, "alice", 100.0)


def state_for(pid=None, coordinator_pid=None, start_time=None, fork_time=None):
    run = ProcessStatus(seq=2, process="p", state=ProcessState.RUNNING, pid=pid,
                        coordinator_pid=coordinator_pid, start_time=start_time, fork_time=fork_time)
    return RunnerState(header=RunnerHeader(user="root", uid=os.getuid()), processes={"p": [run]})


def test_scan_process_of_missing_or_unverified_pids():
    assert TaskRunnerHelper.scan_process(state_for(), "p") == (None, None, set())
    assert TaskRunnerHelper.scan_process(RunnerState(processes={}), "p") == (None, None, set())
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert TaskRunnerHelper.scan_process(state_for(pid=dead.pid, start_time=time.time()), "p") == (
        None, None, set())
    # our own pid, but recorded with a start time far from its real one: a reused pid
    me = state_for(pid=os.getpid(), start_time=psutil.Process().create_time() + 3600)
    assert TaskRunnerHelper.scan_process(me, "p") == (None, None, set())


def test_scan_and_kill_a_real_tree():
    proc = subprocess.Popen(["bash", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(psutil.Process(proc.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        state = state_for(pid=proc.pid, start_time=psutil.Process(proc.pid).create_time())
        _, process, children = TaskRunnerHelper.scan_process(state, "p")
        assert process.pid == proc.pid and len(children) == 2
        assert TaskRunnerHelper.kill_process(state, "p", wait=5)
        proc.wait(timeout=5)
        assert all(not child.is_running() or child.status() == psutil.STATUS_ZOMBIE for child in children)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_kill_runner_rules():
    with pytest.raises(TaskRunnerHelper.Error):
        TaskRunnerHelper.kill_runner(RunnerState(processes={}))
    from thermos.gen.thermos.ttypes import TaskStatus

    with pytest.raises(TaskRunnerHelper.Error, match="seppuku"):
        TaskRunnerHelper.kill_runner(RunnerState(statuses=[TaskStatus(runner_pid=os.getpid())]))
    sleeper = subprocess.Popen(["sleep", "60"])
    assert TaskRunnerHelper.kill_runner(RunnerState(statuses=[TaskStatus(runner_pid=sleeper.pid)]))
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    assert TaskRunnerHelper.kill_runner(RunnerState(statuses=[TaskStatus(runner_pid=sleeper.pid)]))


def test_checkpoint_lock_and_forced_takeover(tmp_path):
    ckpt = str(tmp_path / "checkpoints" / "t" / "runner")
    os.makedirs(os.path.dirname(ckpt), exist_ok=True)
    if not os.path.exists("/usr/bin/flock"):
        pytest.skip("flock(1) not installed")
    holder = subprocess.Popen(["flock", "-x", "-o", ckpt, "sleep", "60"], start_new_session=True)
    try:
        os.makedirs(os.path.dirname(ckpt), exist_ok=True)
        deadline = time.monotonic() + 10
        while TaskRunnerHelper.lock_file(ckpt) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        from thermos.gen.thermos.ttypes import TaskStatus

        with pytest.raises(TaskRunnerHelper.PermissionError):
            TaskRunnerHelper.open_checkpoint(ckpt)
        state = RunnerState(statuses=[TaskStatus(runner_pid=holder.pid)])
        writer = TaskRunnerHelper.open_checkpoint(ckpt, force=True, state=state)
        writer.close()
        assert holder.wait(timeout=5) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)  # flock's own child, the sleep


def test_task_records_move_from_active_to_finished(tmp_path):
    spec = TaskPath(root=str(tmp_path), task_id="t")
    TaskRunnerHelper.initialize_task(spec, '{"name": "t"}')
    active = spec.given(state="active").getpath("task_path")
    assert open(active).read() == '{"name": "t"}'
    TaskRunnerHelper.initialize_task(spec, '{"other": 1}')  # idempotent: the record is kept
    assert open(active).read() == '{"name": "t"}'
    TaskRunnerHelper.finalize_task(spec)
    assert not os.path.exists(active)
    assert os.path.exists(spec.given(state="finished").getpath("task_path"))
    with pytest.raises(TaskRunnerHelper.Error):
        TaskRunnerHelper.initialize_task(spec, "{}")
    with pytest.raises(TaskRunnerHelper.Error):
        TaskRunnerHelper.finalize_task(spec)


def test_reap_children():
    procs = [subprocess.Popen(["true"]) for _ in range(3)]
    deadline = time.monotonic() + 10
    reaped = set()
    pids = {p.pid for p in procs}  # zombies of earlier tests may be reaped too: wait for ours
    while not pids <= reaped and time.monotonic() < deadline:
        reaped |= TaskRunnerHelper.reap_children()
        time.sleep(0.01)
    assert pids <= reaped
