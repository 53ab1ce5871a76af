"""gc_executor end to end: started by the stand-in Mesos agent, over a work_dir of real runner checkpoints."""

import os
import shutil
import time
import uuid
from re import escape as re_escape
from re import search as re_search

import pytest
from thermos.gc.executor import encode_retained

from tests.gc.helpers import make_outside, snapshot
from tests.gc.workdir import WorkDir
from tests.harness.mesos import dump_executors, python_command
from thermos.gen.aurora.ttypes import ScheduleStatus as S
from thermos.gen.thermos.ttypes import TaskState
from thermos.testing.wait import wait_until

HOUR = 3600.0
GC = "aurora.gc"


def start_gc(agent, tmp_path, *flags):
    empty = tmp_path / "no-fixed-root"
    empty.mkdir(exist_ok=True)
    command = python_command("-m", "thermos.gc.executor", "--root", str(empty), *flags)
    return agent.launch_executor(GC, command)


def send_gc(agent, retained, data=None):
    task_id = "system-gc-%s" % uuid.uuid4()
    agent.launch_task(GC, agent.task_info(task_id, encode_retained(retained) if data is None else data,
                                          executor_id=GC, name=task_id))
    return task_id


def messages(agent, task_id):
    return [(u.state, u.message) for u in agent.task_updates(task_id)]


@pytest.fixture
def agent(agent_factory):
    return agent_factory()


@pytest.fixture
def host(agent, tmp_path):
    wd = WorkDir(agent.work_dir, agent.agent_id, agent.framework_id)
    old = time.time() - 5 * HOUR
    try:
        yield wd, {
            "kept": wd.run_task("kept", mtime=old),
            "forgotten": wd.run_task("forgotten", mtime=old),
            "forgotten_failed": wd.run_task("forgotten_failed", "exit 3", mtime=old),
            "reported": wd.run_task("reported", "exit 2", mtime=old),
            "unsentinelled": wd.run_task("unsentinelled", sentinel=False, mtime=old),
            "stale": wd.stale_task("stale", mtime=old),
            "wanted": wd.run_task("wanted", "sleep 600", wait=False),
            "unwanted": wd.run_task("unwanted", "sleep 600", wait=False),
        }
    finally:
        wd.stop_all()


def test_a_gc_task_reconciles_the_host_with_the_scheduler(agent, tmp_path, host):
    wd, runs = host
    outside = make_outside(str(tmp_path / "outside"))
    evil = wd.run_task("evil", mtime=time.time() - 5 * HOUR)
    shutil.rmtree(evil.sandbox)
    os.symlink(outside, evil.sandbox)
    before = snapshot(outside)
    retained = {"kept": S.FINISHED, "reported": S.RUNNING, "stale": S.RUNNING, "wanted": S.RUNNING,
                "ghost": S.RUNNING, "assigned_ghost": S.ASSIGNED, "old_ghost": S.KILLED}

    run = start_gc(agent, tmp_path, "--minimum-kill-age", "0s", "--idle-timeout", "2s")
    gc_id = send_gc(agent, retained)

    final = agent.wait_terminal(gc_id, timeout=120)
    assert (final.state, final.message) == ("TASK_FINISHED", "Garbage collection finished."), \
        dump_executors(agent)
    # finished tasks nobody retains are gone; retained ones and a run the agent still runs are kept
    assert not runs["forgotten"].exists() and not runs["forgotten_failed"].exists()
    assert runs["kept"].exists() and runs["reported"].exists() and runs["unsentinelled"].exists()
    # the scheduler hears what really happened
    assert messages(agent, "reported") == [("TASK_FAILED", "Task finish detected by GC executor.")]
    assert messages(agent, "ghost") == [("TASK_LOST", "GC executor found no trace of task.")]
    assert messages(agent, "stale") == [("TASK_LOST", "GC executor detected failed task runner.")]
    assert not agent.task_updates("assigned_ghost") and not agent.task_updates("old_ghost")
    # a live task nobody wants is killed through its runner; a wanted one keeps running
    assert runs["unwanted"].task_state() == TaskState.KILLED
    assert runs["unwanted"].proc.wait(timeout=30) is not None
    assert runs["wanted"].task_state() == TaskState.ACTIVE and runs["wanted"].proc.poll() is None
    assert not agent.task_updates("wanted") and not agent.task_updates("unwanted")
    # a dead runner's task is marked LOST in its checkpoint, and its record finalized
    assert runs["stale"].task_state() == TaskState.LOST
    assert os.path.exists(os.path.join(runs["stale"].root, "tasks", "finished", "stale"))
    # the symlinked sandbox was refused and nothing outside changed; `latest` links are intact
    assert snapshot(outside) == before and os.path.islink(evil.sandbox)
    stderr = run.log_text()
    collected = r"collected forgotten in %s: freed \d+\.\d KiB" % re_escape(runs["forgotten"].root)
    assert re_search(collected, stderr)
    assert "skipped evil in %s: %s is a symlink: not followed, left in place" % (
        evil.root, evil.sandbox) in stderr
    assert os.path.islink(os.path.join(os.path.dirname(runs["kept"].path), "latest"))
    assert os.path.islink(os.path.join(wd.path, "slaves", "latest"))
    # then it ends itself once idle
    assert agent.wait_exit(GC, timeout=60) == 0
    assert "GC executor exiting: idle for 2 s" in run.log_text()


def test_a_framework_message_is_a_gc_request_too(agent, tmp_path):
    wd = WorkDir(agent.work_dir, agent.agent_id, agent.framework_id)
    done = wd.run_task("done", mtime=time.time() - 5 * HOUR)
    start_gc(agent, tmp_path, "--idle-timeout", "30s")
    agent.wait_for(lambda: agent.executors[GC].subscribed, timeout=60, what="the GC executor to subscribe")
    agent.message(GC, b"not thrift at all")
    agent.message(GC, encode_retained({}))
    wait_until(lambda: not done.exists(), timeout=60)
    assert "Ignoring a framework message (17 bytes)" in agent.executors[GC].log_text()
    agent.shutdown(GC)
    assert agent.wait_exit(GC, timeout=60) == 0


def test_undecodable_data_fails_the_gc_task_with_one_line(agent, tmp_path):
    start_gc(agent, tmp_path, "--idle-timeout", "30s")
    gc_id = send_gc(agent, None, data=b"\x0d\x00\x02\x0b\x08\xff\xff\xff\xff")
    update = agent.wait_terminal(gc_id, timeout=60)
    assert (update.state, update.message) == ("TASK_FAILED", "Deserialization of GC task failed")
    agent.shutdown(GC)
    assert agent.wait_exit(GC, timeout=60) == 0


def test_outside_mesos_it_says_so_in_one_line(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
    proc = subprocess.run([sys.executable, "-m", "thermos.gc.executor"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("gc_executor: error: MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID, "
                                  "MESOS_EXECUTOR_ID not set")
    assert proc.stderr.count("\n") == 1
