"""`thermos` commands on tasks really run by thermos_runner: active, finished, failed, killed, corrupt."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import psutil

from tests.cli.helpers import REPO, thermos_cmd, thermos_proc
from tests.cli.live import make_task, wait_until
from thermos.common.ckpt import CheckpointDispatcher
from thermos.gen.thermos.ttypes import ProcessState, TaskState


def test_status_shows_each_kind_of_task(live):
    result = thermos_proc(live.root, "status", "-v")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "Active tasks:"
    assert re.fullmatch(r"  hello_active +\[owner: +\w+\]  state:   ACTIVE start: .{25}", lines[1])
    finished = "\n".join(lines[lines.index("Finished tasks:"):])
    assert re.search(r"  hello_ok +\[owner: +\w+\]  state:  SUCCESS start: ", finished)
    assert re.search(r"  hello_fail +\[owner: +\w+\]  state:   FAILED start: ", finished)


def test_status_process_table_of_a_failed_task(live):
    out = thermos_proc(live.root, "status", "-vvv", "hello_fail").out
    assert re.search(r"      - main runs: 1 last: pid=\d+, rc=3, finish:\w{3} .+, state:FAILED", out)
    assert "    sandbox: %s" % live.harness["hello_fail"].sandbox in out


def test_status_json_of_the_active_task(live):
    import json

    data = json.loads(thermos_proc(live.root, "status", "--json", "hello_active").out)
    [task] = data["tasks"]
    assert task["state"] == "ACTIVE" and task["where"] == "active"
    assert task["processes"]["main"]["last"]["state"] == "RUNNING"
    assert task["processes"]["main"]["last"]["pid"] == live.active_run.pid


def test_read_of_a_finished_task(live):
    result = thermos_proc(live.root, "read", live.ckpt("hello_ok"))
    lines = result.out.splitlines()
    assert result.code == 0
    assert lines[:2] == ["Recovered Task Header:", "  id:      hello_ok"]
    assert "  sandbox: %s" % live.harness["hello_ok"].sandbox in lines
    states = [line.rsplit("=> ", 1)[1] for line in lines if "[pid: " in line]
    assert states[0] == "ACTIVE" and states[-1] == "SUCCESS"
    assert "  hello   runs: 1" in lines
    assert any(re.fullmatch(r"     0: pid=\d+, rc=0, finish:\w{3} .+, state:SUCCESS", line) for line in lines)


def test_read_simple_shows_the_records_as_stored(live):
    out = thermos_proc(live.root, "read", "--simple", live.ckpt("hello_fail")).out
    assert out.startswith("CKPT: RunnerCkpt(runner_header=None, process_status=None, task_status=TaskStatus(")
    assert "state=5, coordinator_pid=None" in out or "return_code=3" in out


def test_tail_of_finished_and_failed_tasks(live):
    result = thermos_proc(live.root, "tail", "hello_ok")
    log = os.path.join(live.harness["hello_ok"].sandbox, ".logs", "hello", "0", "stdout")
    assert result.code == 0
    assert result.out == "Tail of terminal log %s\nhello world\nline2\n" % log
    result = thermos_proc(live.root, "tail", "--stderr", "hello_fail", "main")
    assert result.out.splitlines()[1:] == ["oops"]


def test_tail_follows_an_active_task_until_it_is_killed(live):
    tail = subprocess.Popen(thermos_cmd(live.root, "tail", "hello_active", "--poll-interval", "0.05"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert tail.stdout.readline().startswith("Tail of active log ")
        assert tail.stdout.readline() == "started\n"
        assert tail.poll() is None  # still following
        killed = thermos_proc(live.root, "kill", "hello_active")
        assert killed.code == 0 and killed.out == "Killing hello_active...done.\n", killed.err
        out, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.returncode == 0 and out == "" and err == ""

    state = CheckpointDispatcher.from_file(live.ckpt("hello_active"))
    assert state.statuses[-1].state == TaskState.KILLED
    assert state.processes["main"][-1].state == ProcessState.KILLED
    wait_until(lambda: not psutil.pid_exists(live.active_run.pid) or
               psutil.Process(live.active_run.pid).status() == psutil.STATUS_ZOMBIE)
    listing = thermos_proc(live.root, "status", "-v", "hello_active").out
    assert listing.startswith("Finished tasks:\n") and "state:   KILLED" in listing


def test_kill_of_a_task_that_is_not_active(live):
    result = thermos_proc(live.root, "kill", "hello_ok")
    assert result.code == 1 and result.out == "" and "No active tasks matched 'hello_ok'" in result.err


def test_gc_dryrun_never_offers_an_active_task(live):
    live.start("still_running", make_task("still_running", "exec sleep 300"))
    result = thermos_proc(live.root, "gc", "--dryrun", "--max_tasks", "0", "--delete-metadata")
    assert result.code == 0
    assert "still_running" not in result.out
    assert "  Task hello_ok data (deleting) logs (keeping) metadata (deleting) " in result.out
    assert os.path.exists(live.harness["hello_ok"].sandbox)  # dry run: nothing deleted
    assert os.path.exists(live.ckpt("hello_ok"))


def test_commands_on_a_corrupt_real_checkpoint(live):
    # Copy a real finished task, then damage a record in the middle of its checkpoint.
    for sub in ("checkpoints", "tasks/finished"):
        src = os.path.join(live.root, sub, "hello_ok")
        dst = os.path.join(live.root, sub, "hello_corrupt")
        (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, dst)
    path = live.ckpt("hello_corrupt")
    with open(path, "r+b") as fp:
        fp.seek(os.path.getsize(path) // 2)
        fp.write(b"\xff" * 16)

    read = thermos_proc(live.root, "read", path)
    assert read.code == 1 and read.out == "" and read.err.count("\n") == 1
    assert read.err.startswith("thermos read: error: Failed to recover from %s: " % path)
    status = thermos_proc(live.root, "status", "-vvv", "hello_corrupt")
    assert "hello_corrupt        [owner:" in status.out and "CORRUPT" in status.out
    assert status.code == 1 and status.err.count("\n") == 1
    tail = thermos_proc(live.root, "tail", "hello_corrupt")
    assert tail.code == 1 and tail.err.count("\n") == 1 and "Could not read the checkpoint" in tail.err
    for result in (read, status, tail):
        assert "Traceback" not in result.err
