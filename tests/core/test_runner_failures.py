"""The runner under bad conditions: a full disk, and processes run as another user."""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from thermos.common import statuses
from thermos.core.helper import TaskRunnerHelper
from thermos.gen.thermos.ttypes import TaskState
from thermos.testing.runner import RunnerHarness

from .runner_util import S, alive, assert_states_agree, proc, run_task, states, task, wait_until

ROOT = os.geteuid() == 0


@pytest.fixture
def tiny_fs(tmp_path):
    """A 256 KiB tmpfs, so the checkpoint disk really fills up (needs root)."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mountpoint)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.decode().strip())
    yield str(mountpoint)
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root")
def test_full_disk_stops_the_runner_with_a_clear_error(tmp_path, tiny_fs):
    # a process that keeps failing fast after a first slow run: many more records than the
    # last partly used page of the checkpoint file can hold once the disk is full
    t = task(proc("writer", "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; "
                            "[ $n -eq 1 ] && sleep 1; [ $n -gt 80 ]", max_failures=0))
    harness = RunnerHarness(t, root=str(tmp_path))
    harness.checkpoint_root = tiny_fs  # the checkpoints live on the tiny disk
    harness.pathspec = harness.pathspec.given(root=tiny_fs)
    runner = harness.start()
    harness.wait_for(lambda state: state.processes.get("writer"))
    filler = os.path.join(tiny_fs, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    result = harness.finish(runner, timeout=60)
    assert result.returncode == statuses.CHECKPOINT_ERROR, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "checkpoint write failed" in last and "No space left on device" in last
    assert "Traceback" not in result.stderr
    os.unlink(filler)
    # what was recorded before the disk filled is intact, and a restart finishes the task
    assert result.reconstructed_state is not None and result.reconstructed_state.header is not None
    result = harness.finish(harness.start(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.task_state in (TaskState.SUCCESS, TaskState.FAILED)


def test_unwritable_checkpoint_root_is_one_line(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    harness = RunnerHarness(task(proc("p", "true")), root=str(tmp_path))
    harness.checkpoint_root = str(blocker / "root")
    result = harness.run()
    assert result.returncode == statuses.CHECKPOINT_ERROR
    assert "Traceback" not in result.stderr
    assert "cannot open checkpoint" in result.stderr.strip().splitlines()[-1]


@pytest.fixture
def open_tmp():
    """A temp dir every user can traverse (pytest's own tmp_path lives under a 0700 dir)."""
    path = tempfile.mkdtemp(prefix="thermos-setuid-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def other_user():
    """A throwaway system user, removed again afterwards."""
    name = "thermos-runner-test"
    created = False
    try:
        pwd.getpwnam(name)
    except KeyError:
        if not ROOT or shutil.which("useradd") is None:
            pytest.skip("needs root and useradd to create a test user")
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", name], check=True)
        created = True
    yield pwd.getpwnam(name)
    if created:
        subprocess.run(["userdel", name], check=False)


def setuid_harness(root, user, cmdline):
    """A harness whose single process runs as `user`, in a sandbox that user owns."""
    harness = RunnerHarness(task(proc("p", cmdline)), root=root, extra_args=["--setuid", user.pw_name])
    os.makedirs(harness.sandbox, exist_ok=True)
    os.chown(harness.sandbox, user.pw_uid, user.pw_gid)
    return harness


@pytest.mark.skipif(not ROOT, reason="setuid needs root")
def test_processes_run_as_the_task_user(open_tmp, other_user):
    harness = setuid_harness(open_tmp, other_user, "id -u > uid.txt; id -un >> uid.txt")
    result = harness.run()
    assert result.returncode == 0, result.stderr
    assert_states_agree(result)
    assert states(result, "p") == [S.SUCCESS]
    with open(os.path.join(harness.sandbox, "uid.txt")) as fp:
        assert fp.read().split() == [str(other_user.pw_uid), other_user.pw_name]
    header = result.reconstructed_state.header
    assert (header.user, header.uid) == (other_user.pw_name, other_user.pw_uid)
    logdir = os.path.join(header.log_dir, "p", "0")
    assert os.stat(os.path.join(logdir, "stdout")).st_uid == other_user.pw_uid


@pytest.mark.skipif(not ROOT, reason="setuid needs root")
def test_kill_finds_processes_that_dropped_privileges(open_tmp, other_user):
    harness = setuid_harness(open_tmp, other_user, "exec sleep 300")
    runner = harness.start()
    run = harness.wait_for(
        lambda s: s.processes.get("p") and s.processes["p"][-1].pid and s.processes["p"][-1])

    runner.kill()
    runner.wait(timeout=10)
    TaskRunnerHelper.kill(harness.task_id, harness.checkpoint_root, force=True)
    wait_until(lambda: not alive(run.pid), timeout=10)


def test_unknown_user_exit_code(tmp_path):
    harness = RunnerHarness(task(proc("p", "true")), root=str(tmp_path),
                            extra_args=["--setuid", "no_such_user_for_thermos"])
    result = harness.run()
    assert result.returncode == statuses.UNKNOWN_USER
    assert "unknown user" in result.stderr and "Traceback" not in result.stderr


def test_missing_port_exit_code(tmp_path):
    harness = RunnerHarness(task(proc("p", "echo {{thermos.ports[http]}}")), root=str(tmp_path))
    result = harness.run()
    assert result.returncode == statuses.INTERNAL_ERROR
    assert "http" in result.stderr and "Traceback" not in result.stderr


def test_invalid_task_json_exit_code(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = subprocess.run([sys.executable, "-m", "thermos.runner", "--thermos_json", str(bad), "--sandbox",
                          str(tmp_path / "sb"), "--checkpoint_root", str(tmp_path / "root")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == statuses.INVALID_TASK
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_runner_flags_rotate_logs(tmp_path):
    """--process_logger_mode rotate with 1 MiB x 1 backup: 3 MB written leaves stdout + stdout.1."""
    t = task(proc("big", "head -c 3000000 /dev/zero"))
    result = run_task(tmp_path, t, extra_args=["--process_logger_mode", "rotate", "--rotate_log_size_mb", "1",
                                               "--rotate_log_backups", "1"])
    logdir = os.path.join(result.reconstructed_state.header.log_dir, "big", "0")
    names = sorted(os.listdir(logdir))
    assert names == ["stderr", "stdout", "stdout.1"]
    assert os.path.getsize(os.path.join(logdir, "stdout.1")) >= 1024 * 1024
    assert os.path.getsize(os.path.join(logdir, "stderr")) == 0


def test_standard_mode_never_rotates(tmp_path):
    t = task(proc("big", "head -c 3000000 /dev/zero"))
    result = run_task(tmp_path, t)
    logdir = os.path.join(result.reconstructed_state.header.log_dir, "big", "0")
    assert sorted(os.listdir(logdir)) == ["stderr", "stdout"]
    assert os.path.getsize(os.path.join(logdir, "stdout")) == 3000000
