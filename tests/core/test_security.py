"""A hostile task user against the root-side code: nothing outside the task may change.

Each attack plants a symlink or hard link where root will next create, chown, append or
truncate, then checks the target (a root-only file or directory) is byte-for-byte and owner
unchanged. Runs as root with a throwaway user; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import sys

import pytest

from tests.harness.users import role_user, traversable_dir  # noqa: F401 - fixtures
from thermos.common import safe_fs
from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.path import TaskPath
from thermos.core.helper import TaskRunnerHelper
from thermos.core.process_logging import LogDestinationResolver, LoggerMode
from thermos.gen.thermos.ttypes import TaskState
from thermos.testing.runner import RunnerHarness
from thermos.testing.wait import wait_until

from .runner_util import S, proc, task

ROOT = os.geteuid() == 0
pytestmark = [pytest.mark.root, pytest.mark.skipif(not ROOT, reason="attacks need root and a second user")]


@pytest.fixture
def user(role_user):  # noqa: F811 - the harness fixture, under this module's name
    """The task's user: a throwaway account (tests/harness/users.py)."""
    return role_user


@pytest.fixture
def root_dir(traversable_dir):  # noqa: F811
    """A root-owned directory every user can traverse (pytest's tmp_path is 0700)."""
    return traversable_dir


class Target:
    """A root-only directory holding a root-only file: what an attacker wants."""

    def __init__(self, base: str) -> None:
        self.dir = os.path.join(base, "target")
        os.mkdir(self.dir, 0o700)
        self.file = os.path.join(self.dir, "secret")
        with open(self.file, "wb") as fp:
            fp.write(b"root only\n")
        os.chmod(self.file, 0o600)
        self.snapshot = self._state()

    def _state(self) -> tuple:
        d, f = os.stat(self.dir), os.stat(self.file)
        with open(self.file, "rb") as fp:
            content = fp.read()
        return (d.st_uid, d.st_gid, stat.S_IMODE(d.st_mode), sorted(os.listdir(self.dir)),
                f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode), content)

    def assert_unchanged(self) -> None:
        assert self._state() == self.snapshot


def setuid_harness(root: str, user: pwd.struct_passwd, t, **kw) -> RunnerHarness:
    harness = RunnerHarness(t, root=root, extra_args=["--setuid", user.pw_name], **kw)
    os.makedirs(harness.sandbox)
    os.chown(harness.sandbox, user.pw_uid, user.pw_gid)  # as a Mesos agent hands it over
    return harness


# --- planted symlinks ---------------------------------------------------------------------------

@pytest.mark.parametrize("plant, outcome", [
    # the next run's log directory: that run fails to start, the one after it runs
    ("mkdir -p .logs/p && ln -s {target} .logs/p/1", TaskState.SUCCESS),
    # the whole log base: no run can log any more, so the task fails (only the attacker loses)
    ("ln -s {target} .logs", TaskState.FAILED),
])
def test_a_planted_log_directory_symlink_is_never_chowned_or_written(root_dir, user, plant, outcome):
    target = Target(root_dir)
    attack = ("if [ ! -e attacked ]; then touch attacked; mv .logs .logs.moved; %s; exit 1; fi; echo ok"
              % plant.format(target=target.dir))
    harness = setuid_harness(root_dir, user, task(proc("p", attack, max_failures=5)))
    result = harness.run()
    target.assert_unchanged()
    assert result.returncode == 0, result.stderr
    assert result.task_state == outcome
    assert "symlink" in result.stderr or "not a directory" in result.stderr


@pytest.mark.parametrize("mode", ["standard", "rotate"])
def test_a_planted_log_file_symlink_or_hard_link_is_refused(root_dir, user, mode):
    """The coordinator opens log files as root in chroot mode: links must not redirect it."""
    target = Target(root_dir)
    logdir = os.path.join(root_dir, "logs")
    os.mkdir(logdir)
    os.chown(logdir, user.pw_uid, user.pw_gid)
    os.link(target.file, os.path.join(logdir, "stdout"))
    os.symlink(target.file, os.path.join(logdir, "stderr"))
    fd = os.open(logdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        resolver = LogDestinationResolver(
            logdir, mode=mode, rotate_log_size=10 if mode == LoggerMode.ROTATE else None,
            rotate_log_backups=1 if mode == LoggerMode.ROTATE else None,
            owner=(user.pw_uid, user.pw_gid), dir_fd=fd)
        with pytest.raises(safe_fs.UnsafePath, match="hard links"):
            resolver.get_handlers()
        os.unlink(os.path.join(logdir, "stdout"))
        with pytest.raises(safe_fs.UnsafePath, match="symlink"):
            resolver.get_handlers()
    finally:
        os.close(fd)
    os.unlink(os.path.join(logdir, "stderr"))
    target.snapshot = target.snapshot[:3] + (sorted(os.listdir(target.dir)),) + target.snapshot[4:]
    target.assert_unchanged()


def test_a_renamed_checkpoint_root_cannot_redirect_coordinator_appends(root_dir, user):
    """Checkpoint root inside a directory the user can write (the Mesos run directory layout)."""
    target = Target(root_dir)
    run_dir = os.path.join(root_dir, "run")
    os.mkdir(run_dir)
    os.chown(run_dir, user.pw_uid, user.pw_gid)
    ckroot = os.path.join(run_dir, "checkpoints")  # where RunnerHarness puts it
    moved = os.path.join(run_dir, "moved")
    planted = TaskPath(root=ckroot, task_id="harness_task", process="p2").getpath("process_checkpoint")
    attack = "mv %s %s && mkdir -p %s && ln -s %s %s" % (
        ckroot, moved, os.path.dirname(planted), target.file, planted)
    t = task(proc("p1", attack), proc("p2", "echo second"), order=[["p1", "p2"]])
    harness = setuid_harness(run_dir, user, t)
    assert harness.checkpoint_root == ckroot
    result = harness.run()
    target.assert_unchanged()
    assert "which other users can write" in result.stderr  # the runner warned at start
    # everything went on being recorded in the directory the runner opened
    state = CheckpointDispatcher.from_file(
        TaskPath(root=moved, task_id=harness.task_id).getpath("runner_checkpoint"))
    assert [run.state for run in state.processes["p2"]][-1] == S.SUCCESS


def test_runner_checkpoint_symlink_and_hard_link_are_refused(root_dir):
    target = Target(root_dir)
    ckdir = os.path.join(root_dir, "checkpoints", "t")
    os.makedirs(ckdir, 0o700)
    runner = os.path.join(ckdir, "runner")
    os.symlink(target.file, runner)
    with pytest.raises(safe_fs.UnsafePath, match="symlink"):
        TaskRunnerHelper.lock_file(runner)
    os.unlink(runner)
    os.link(target.file, runner)
    with pytest.raises(safe_fs.UnsafePath, match="hard links"):
        TaskRunnerHelper.open_checkpoint(runner)
    os.unlink(runner)
    target.assert_unchanged()


def test_task_json_is_not_written_through_a_planted_symlink(root_dir, user):
    target = Target(root_dir)
    ckroot = os.path.join(root_dir, "ck")
    os.makedirs(os.path.join(ckroot, "tasks"))
    os.chown(os.path.join(ckroot, "tasks"), user.pw_uid, user.pw_gid)  # writable by the user
    os.symlink(target.dir, os.path.join(ckroot, "tasks", "active"))
    spec = TaskPath(root=ckroot, task_id="t")
    with pytest.raises(safe_fs.UnsafePath, match="other users can write"):
        TaskRunnerHelper.initialize_task(spec, '{"name": "t"}')
    target.assert_unchanged()


def test_a_process_name_with_a_newline_is_one_line_and_exit_102(root_dir):
    path = os.path.join(root_dir, "task.json")
    with open(path, "w") as fp:
        json.dump({"name": "t", "processes": [{"name": "ok\nssh-rsa AAAA attacker", "cmdline": "true"}],
                   "resources": {"cpu": 0.1, "ram": 1 << 20, "disk": 1 << 20}}, fp)
    result = subprocess.run([sys.executable, "-m", "thermos.runner", "--thermos_json", path, "--sandbox",
                             os.path.join(root_dir, "sb"), "--checkpoint_root", os.path.join(root_dir, "ck"),
                             "--task_id", "t"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 102
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid process name" in lines[0] and "ok\\nssh-rsa" in lines[0]
    assert not os.path.exists(os.path.join(root_dir, "ck", "checkpoints", "t"))


def test_a_task_id_with_a_newline_is_refused(root_dir):
    harness = RunnerHarness(task(proc("p", "true")), root=root_dir, task_id="bad\nid")
    result = harness.run()
    assert result.returncode == 102
    assert "invalid task id 'bad\\nid'" in result.stderr


# --- modes, umask, PATH, no_new_privs -----------------------------------------------------------

def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("allow_setuid", [False, True])
def test_modes_are_explicit_under_umask_0000(root_dir, user, allow_setuid):
    cmd = "umask > umask.txt; grep NoNewPrivs /proc/self/status > nnp.txt; echo $PATH > path.txt"
    harness = RunnerHarness(task(proc("p", cmd)), root=root_dir,
                            extra_args=["--setuid", user.pw_name] + (
                                ["--allow_setuid_binaries"] if allow_setuid else []))
    old = os.umask(0)
    try:
        result = harness.run()
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert result.task_state == TaskState.SUCCESS
    spec = harness.pathspec
    assert _mode(spec.getpath("checkpoint_path")) == 0o700
    assert _mode(spec.getpath("runner_checkpoint")) == 0o600
    assert _mode(spec.given(process="p").getpath("process_checkpoint")) == 0o600
    finished = spec.given(state="finished").getpath("task_path")
    assert _mode(finished) == 0o600 and _mode(os.path.dirname(finished)) == 0o700
    sandbox = harness.sandbox
    assert _mode(sandbox) == 0o755 and os.stat(sandbox).st_uid == user.pw_uid  # made for the user
    logdir = os.path.join(sandbox, ".logs", "p", "0")
    assert _mode(os.path.join(sandbox, ".logs")) == 0o755 and _mode(logdir) == 0o755
    assert os.stat(logdir).st_uid == user.pw_uid
    for name in ("stdout", "stderr"):
        assert _mode(os.path.join(logdir, name)) == 0o644
        assert os.stat(os.path.join(logdir, name)).st_uid == user.pw_uid

    def read(name: str) -> str:
        with open(os.path.join(sandbox, name)) as fp:
            return fp.read().strip()

    assert read("umask.txt") == "0022"
    assert read("nnp.txt").split() == ["NoNewPrivs:", "0" if allow_setuid else "1"]
    assert read("path.txt") == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_thermos_run_user_gets_a_sandbox_it_can_use(root_dir, user):
    config = os.path.join(root_dir, "t.thermos")
    with open(config, "w") as fp:
        fp.write("export(Task(name='t', processes=[Process(name='p', cmdline='mkdir data && touch data/x')],"
                 " resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))\n")
    result = subprocess.run(
        [sys.executable, "-m", "thermos.cli.main", "--root", os.path.join(root_dir, "ck"), "run",
         "--sandbox", os.path.join(root_dir, "sb"), "--task_id", "t1", "--user", user.pw_name, config],
        capture_output=True, text=True, timeout=60)
    assert "Task t1 finished: SUCCESS" in result.stdout, result.stdout + result.stderr
    sandbox = os.path.join(root_dir, "sb", "t1")
    assert os.stat(sandbox).st_uid == user.pw_uid
    assert os.stat(os.path.join(sandbox, "data", "x")).st_uid == user.pw_uid


# --- signals that used to kill without cleanup --------------------------------------------------

def test_sighup_and_sigalrm_do_not_kill_thermos_runner(root_dir):
    harness = RunnerHarness(task(proc("p", "exec sleep 300")), root=root_dir)
    runner = harness.start()
    run = harness.wait_for_running("p")
    # Pending standard signals are delivered lowest number first: had HUP (1) killed the runner,
    # USR1 (10) would never be handled and the task would stay ACTIVE.
    for sig in (signal.SIGHUP, signal.SIGALRM, signal.SIGUSR1):
        os.kill(runner.pid, sig)
    result = harness.finish(runner, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.task_state == TaskState.KILLED
    wait_until(lambda: not os.path.exists("/proc/%d" % run.pid), timeout=10)


def test_sighup_kills_a_foreground_thermos_run_gracefully(root_dir):
    config = os.path.join(root_dir, "t.thermos")
    with open(config, "w") as fp:
        fp.write("export(Task(name='t', resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),"
                 " processes=[Process(name='p', cmdline='echo $$ > pid; exec sleep 300')]))\n")
    ck = os.path.join(root_dir, "ck")
    cli = subprocess.Popen(
        [sys.executable, "-m", "thermos.cli.main", "--root", ck, "run", "--sandbox",
         os.path.join(root_dir, "sb"), "--task_id", "t1", config],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pidfile = os.path.join(root_dir, "sb", "t1", "pid")
    wait_until(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), timeout=30)
    pid = int(open(pidfile).read())
    cli.send_signal(signal.SIGALRM)  # ignored
    cli.send_signal(signal.SIGHUP)   # the terminal closed: a graceful kill
    try:
        out, err = cli.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        cli.kill()
        out, err = cli.communicate()
        raise AssertionError("thermos run did not end after SIGHUP:\n%s\n%s" % (out, err)) from None
    assert "Terminal closed (SIGHUP), killing job!" in err
    assert "Task t1 finished: KILLED" in out
    state = CheckpointDispatcher.from_file(TaskPath(root=ck, task_id="t1").getpath("runner_checkpoint"))
    assert state.statuses[-1].state == TaskState.KILLED
    wait_until(lambda: not os.path.exists("/proc/%d" % pid), timeout=10)
