"""The coordinator, driven through real forks (spec §6 and §12 core/test_process.py)."""

import ctypes
import fcntl
import gc
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

import thermos.core.process as process_module
from thermos.common.path import TaskPath
from thermos.common.recordio import ThriftRecordReader, ThriftRecordWriter
from thermos.core.process import STANDARD_PATH, LoggerDestination, LoggerMode, Process
from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt

TERMINAL = {ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.KILLED, ProcessState.LOST}
STDERR = 'for i in {1..31};do echo "stderr" 1>&2; done;'
STDOUT = 'for i in {1..31};do echo "stdout";done;'
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


# --- helpers -----------------------------------------------------------------------------------

def records(path):
    try:
        with open(path, "rb") as fp:
            return [r.process_status for r in ThriftRecordReader(fp, RunnerCkpt)]
    except FileNotFoundError:
        return []


def wait_for(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.01)


def wait_for_state(path, states, timeout=15.0):
    def reached():
        recs = records(path)
        return recs if recs and recs[-1].state in states else None
    return wait_for(reached, timeout, "%s in %s" % (states, path))


def finish(p, timeout=15.0):
    """Wait for the terminal record, reap the coordinator, return the records."""
    recs = wait_for_state(p.ckpt_file(), TERMINAL, timeout)
    os.waitpid(p.pid, 0)
    return recs


def kill_tree(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(p.pid, 0)


def log_path(taskpath, name):
    return taskpath.with_filename(name).getpath("process_logdir")


def log_content(taskpath, name):
    with open(log_path(taskpath, name)) as fp:
        return fp.read()


@pytest.fixture(autouse=True)
def reap_orphans():
    """Process.start() makes this process a subreaper: collect whatever was orphaned onto it."""
    yield
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


@pytest.fixture
def td():
    path = tempfile.mkdtemp(prefix="thermos-process-")
    os.chmod(path, 0o755)  # other users must be able to reach the sandbox
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def taskpath(td):
    return TaskPath(root=td, task_id="task", process="process", run=0, log_dir=os.path.join(td, ".logs"))


@pytest.fixture
def sandbox(td):
    path = os.path.join(td, "sandbox")
    os.makedirs(path)
    return path


def make(taskpath, sandbox, cmdline, cls=Process, **kw):
    return cls("process", cmdline, 0, taskpath, sandbox, **kw)


@pytest.fixture(scope="module")
def other_user():
    """A throwaway user, member of an extra group, removed afterwards."""
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd")
    name, group = "thermos-t%d" % os.getpid(), "thermos-g%d" % os.getpid()
    subprocess.run(["groupadd", group], check=True)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh",
                    "--user-group", "--groups", group, name], check=True)
    try:
        yield pwd.getpwnam(name), os.getgrouplist(name, pwd.getpwnam(name).pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", group], check=False)


# --- construction --------------------------------------------------------------------------------

def test_constructor_validates(taskpath, td):
    with pytest.raises(ValueError):
        Process("p", "true", 0, taskpath, td, logger_destination="syslog")
    with pytest.raises(ValueError):
        Process("p", "true", 0, taskpath, td, logger_mode="daily")
    with pytest.raises(ValueError):
        Process("p", "true", 0, taskpath, td, logger_mode="rotate", rotate_log_backups=1)
    with pytest.raises(ValueError):
        Process("p", "true", 0, taskpath, td, logger_mode="rotate", rotate_log_size=10, rotate_log_backups=0)
    with pytest.raises(Process.UnspecifiedSandbox):
        Process("p", "true", 0, taskpath, "", chroot=True)
    with pytest.raises(Process.UnspecifiedSandbox):
        Process("p", "true", 0, taskpath, td, mesos_containerizer_path="/bin/true")
    assert issubclass(Process.PermissionError, Process.Error)
    new_sandbox = os.path.join(td, "a", "b")
    Process("p", "true", 0, taskpath, new_sandbox)
    assert os.path.isdir(new_sandbox)


def test_accessors_and_rebind(taskpath, sandbox, td):
    p = make(taskpath, sandbox, "echo hi")
    assert (p.name, p.cmdline, p.pid, p.fork_time) == ("process", "echo hi", None, None)
    assert p.ckpt_file() == os.path.join(td, "checkpoints", "task", "coordinator.process")
    p.rebind(4242, 1234.5)
    assert (p.pid, p.fork_time) == (4242, 1234.5)


# --- the fork protocol and the records ---------------------------------------------------------------

def test_hello_world(taskpath, sandbox):
    p = make(taskpath, sandbox, "echo hello world", clock=time.time)
    p.start()
    forked, running, success = finish(p)
    assert log_content(taskpath, "stdout") == "hello world\n"
    assert log_content(taskpath, "stderr") == ""
    assert (forked.seq, forked.process, forked.state) == (0, "process", ProcessState.FORKED)
    assert forked.coordinator_pid == p.pid and forked.fork_time == p.fork_time
    assert (running.seq, running.state) == (1, ProcessState.RUNNING)
    assert running.pid not in (None, p.pid) and running.start_time >= forked.fork_time
    assert (success.seq, success.state, success.return_code) == (2, ProcessState.SUCCESS, 0)
    assert success.stop_time >= running.start_time


def test_sequence_numbers_continue_across_runs(taskpath, sandbox):
    """Run 0 is seq 1..3 and run 1 is seq 5..7 in the same file (spec §2.5)."""
    first = Process("process", "true", 1, taskpath, sandbox)
    first.start()
    finish(first)
    second = Process("process", "true", 5, taskpath.given(run=1), sandbox)
    second.start()
    recs = finish(second)
    assert [(r.seq, r.state) for r in recs] == [
        (1, ProcessState.FORKED), (2, ProcessState.RUNNING), (3, ProcessState.SUCCESS),
        (5, ProcessState.FORKED), (6, ProcessState.RUNNING), (7, ProcessState.SUCCESS)]


@pytest.mark.parametrize("cmdline, state, rc", [
    ("exit 3", ProcessState.FAILED, 3),
    ("kill -9 $$", ProcessState.KILLED, -9),
    ("kill -TERM $$", ProcessState.KILLED, -15),
])
def test_exit_status_maps_to_state(taskpath, sandbox, cmdline, state, rc):
    p = make(taskpath, sandbox, cmdline)
    p.start()
    final = finish(p)[-1]
    assert (final.state, final.return_code) == (state, rc)


def test_coordinator_leads_its_own_session(taskpath, sandbox):
    p = make(taskpath, sandbox, "cut -d' ' -f5,6 /proc/$$/stat")
    p.start()
    finish(p)
    assert log_content(taskpath, "stdout").split() == [str(p.pid), str(p.pid)]


def test_the_checkpoint_lock_is_held_for_the_coordinators_lifetime(taskpath, sandbox):
    p = make(taskpath, sandbox, "sleep 30")
    p.start()
    try:
        wait_for_state(p.ckpt_file(), {ProcessState.RUNNING})
        with pytest.raises(Process.CheckpointError):
            make(taskpath.given(run=1), sandbox, "true").start()
    finally:
        kill_tree(p)
    again = Process("process", "true", 3, taskpath.given(run=1), sandbox)
    again.start()  # the dead coordinator's lock is gone
    assert finish(again)[-1].state == ProcessState.SUCCESS


class FixedClockPlatform:
    def __init__(self):
        self.forks = 0

    def fork(self):
        self.forks += 1
        return os.fork()

    def getpid(self):
        return os.getpid()

    def time(self):
        return 1000.25


def test_platform_injection(taskpath, sandbox):
    platform = FixedClockPlatform()
    p = make(taskpath, sandbox, "true", platform=platform)
    p.start()
    forked, running, success = finish(p)
    assert platform.forks == 1
    assert forked.fork_time == running.start_time == success.stop_time == p.fork_time == 1000.25


def test_unknown_user(taskpath, sandbox):
    with pytest.raises(Process.UnknownUserError):
        make(taskpath, sandbox, "true", user="no-such-user-thermos").start()
    assert not os.path.exists(make(taskpath, sandbox, "true").ckpt_file())


def test_other_user_without_root_is_refused(taskpath, sandbox, monkeypatch):
    monkeypatch.setattr(process_module, "current_euid", lambda: 1000)
    other = next(u for u in pwd.getpwall() if u.pw_uid not in (0, os.getuid()))
    with pytest.raises(Process.PermissionError):
        make(taskpath, sandbox, "true", user=other.pw_name).start()


def test_the_runner_becomes_a_subreaper_and_keeps_its_heap_frozen(taskpath, sandbox):
    p = make(taskpath, sandbox, "true")
    p.start()
    finish(p)
    value = ctypes.c_int(0)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(37, ctypes.byref(value), 0, 0, 0) == 0  # PR_GET_CHILD_SUBREAPER
    assert value.value == 1
    assert gc.get_freeze_count() > 0


# --- what the coordinator and the user process inherit ---------------------------------------------

def proc_status(pid):
    with open("/proc/%d/status" % pid) as fp:
        return dict(line.rstrip("\n").split(":\t", 1) for line in fp if ":\t" in line)


def test_only_the_checkpoint_and_stdio_survive_into_the_coordinator(taskpath, sandbox, td):
    runner_ckpt = open(os.path.join(td, "runner"), "a+b")  # stands for the runner's locked checkpoint
    fcntl.flock(runner_ckpt.fileno(), fcntl.LOCK_EX)
    leaked = os.open(os.path.join(td, "inheritable"), os.O_WRONLY | os.O_CREAT)
    os.set_inheritable(leaked, True)
    try:
        p = make(taskpath, sandbox, "sleep 30")
        p.start()
    finally:
        os.close(leaked)
        runner_ckpt.close()
    try:
        running = wait_for_state(p.ckpt_file(), {ProcessState.RUNNING})[-1]
        fd_dir = "/proc/%d/fd" % p.pid
        extra = [os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir) if int(fd) > 2]
        assert extra == [p.ckpt_file()]
        assert sorted(int(fd) for fd in os.listdir("/proc/%d/fd" % running.pid)) == [0, 1, 2]
        with open(os.path.join(td, "runner"), "a+b") as again:  # the coordinator holds no runner lock
            fcntl.flock(again.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        coordinator, user = proc_status(p.pid), proc_status(running.pid)
        assert int(coordinator["SigCgt"], 16) == 0  # none of the runner's handlers
        assert int(coordinator["SigIgn"], 16) & (1 << (signal.SIGINT - 1))
        glibc_internal = (1 << 31) | (1 << 32)  # 32 and 33: posix_spawn leaves them ignored
        assert int(user["SigIgn"], 16) & ~glibc_internal == 0 and int(user["SigBlk"], 16) == 0
    finally:
        kill_tree(p)


def test_fd_cloexec(taskpath, sandbox, td):
    class KeepFds(Process):
        FD_CLOEXEC = False

    def run_with(cls, run):
        with open(os.path.join(td, "silly_pants"), "w") as silly_pants:
            os.set_inheritable(silly_pants.fileno(), True)
            p = cls("process", "echo test >&%d" % silly_pants.fileno(), 0, taskpath.given(run=run), sandbox)
            p.start()
        return finish(p)[-1].return_code

    assert run_with(KeepFds, 0) == 0
    assert run_with(Process, 1) != 0


def test_environment_is_minimal(taskpath, sandbox, monkeypatch):
    monkeypatch.setenv("THERMOS_TEST_SECRET", "leak")
    p = make(taskpath, sandbox, "env")
    p.start()
    finish(p)
    env = dict(line.split("=", 1) for line in log_content(taskpath, "stdout").splitlines())
    me = pwd.getpwuid(os.getuid()).pw_name
    assert env["HOME"] == sandbox and env["PWD"] == sandbox
    assert env["USER"] == env["LOGNAME"] == me
    # root's own PATH never reaches a task; a non-root runner passes its PATH on
    assert env["PATH"] == (STANDARD_PATH if os.geteuid() == 0 else os.environ["PATH"])
    assert "THERMOS_TEST_SECRET" not in env and "BASH_ENV" not in env
    assert set(env) <= {"HOME", "USER", "LOGNAME", "PATH", "PWD", "SHLVL", "_"}


@pytest.mark.parametrize("var, preserve, expected", [
    ("PATH", True, "SOME_PATH"), ("TEST", True, "A_TEST_VAR"),
    ("PATH", False, STANDARD_PATH if os.geteuid() == 0 else "SOME_PATH"), ("TEST", False, ""),
])
def test_preserve_env(taskpath, sandbox, monkeypatch, var, preserve, expected):
    monkeypatch.setattr(os, "environ", os.environ.copy())
    os.environ.clear()
    os.environ.update(PATH="SOME_PATH", TEST="A_TEST_VAR")
    p = make(taskpath, sandbox, "echo $" + var, preserve_env=preserve)
    p.start()
    assert finish(p)[-1].return_code == 0
    assert log_content(taskpath, "stdout") == expected + "\n"


def test_thermos_profile_is_sourced_through_bash_env(taskpath, sandbox):
    with open(os.path.join(sandbox, ".thermos_profile"), "w") as fp:
        fp.write("export FOO=profiled\n")
    p = make(taskpath, sandbox, "echo $FOO $BASH_ENV")
    p.start()
    finish(p)
    assert log_content(taskpath, "stdout") == "profiled %s/.thermos_profile\n" % sandbox


# --- users ------------------------------------------------------------------------------------------

def test_log_permissions(taskpath, sandbox):
    p = make(taskpath, sandbox, "echo hello world")
    p.start()
    finish(p)
    for name in ("stdout", "stderr"):
        assert os.stat(log_path(taskpath, name)).st_uid == os.getuid()


def test_runs_as_another_user(taskpath, sandbox, other_user):
    user, groups = other_user
    p = make(taskpath, sandbox, "id -u; id -g; id -G; echo $HOME $USER $LOGNAME; touch $HOME/x 2>&1",
             user=user.pw_name)
    p.start()
    finish(p)
    uid, gid, group_list, names, touch = log_content(taskpath, "stdout").splitlines()
    assert (int(uid), int(gid)) == (user.pw_uid, user.pw_gid)
    assert sorted(int(g) for g in group_list.split()) == sorted(set(groups))
    assert names.split() == [sandbox, user.pw_name, user.pw_name]
    assert "Permission denied" in touch  # the root-owned sandbox is not writable by the user
    logdir = taskpath.getpath("process_logdir")
    for path in (logdir, log_path(taskpath, "stdout"), log_path(taskpath, "stderr")):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), path


def test_rotating_logs_as_another_user(taskpath, sandbox, other_user):
    user, _ = other_user
    p = make(taskpath, sandbox, STDOUT, user=user.pw_name, logger_mode=LoggerMode.ROTATE,
             rotate_log_size=70, rotate_log_backups=2)
    p.start()
    assert finish(p)[-1].state == ProcessState.SUCCESS
    for name in ("stdout", "stdout.1", "stdout.2", "stderr"):
        assert os.stat(log_path(taskpath, name)).st_uid == user.pw_uid, name


# --- logging ----------------------------------------------------------------------------------------

def test_log_standard(taskpath, sandbox):
    p = make(taskpath, sandbox, STDERR + STDOUT)
    p.start()
    assert finish(p)[-1].return_code == 0
    assert log_content(taskpath, "stdout") == "stdout\n" * 31
    assert log_content(taskpath, "stderr") == "stderr\n" * 31


def test_log_standard_appends_never_rotates(taskpath, sandbox):
    os.makedirs(taskpath.getpath("process_logdir"))
    with open(log_path(taskpath, "stdout"), "w") as fp:
        fp.write("before\n")
    p = make(taskpath, sandbox, "head -c 3000000 /dev/zero | tr '\\0' x; echo")
    p.start()
    finish(p)
    assert os.path.getsize(log_path(taskpath, "stdout")) == len("before\n") + 3000001
    assert not os.path.exists(log_path(taskpath, "stdout.1"))


class OneByteReads(Process):
    LOG_READ_SIZE = 1  # makes every write visible to rotation one byte at a time


@pytest.mark.parametrize("cls", [OneByteReads, Process])
@pytest.mark.parametrize("script, streams", [
    (STDERR + STDOUT, ("stderr", "stdout")), (STDERR, ("stderr",)), (STDOUT, ("stdout",))])
def test_log_rotation(taskpath, sandbox, cls, script, streams):
    p = make(taskpath, sandbox, script, cls=cls, logger_mode=LoggerMode.ROTATE, rotate_log_size=70,
             rotate_log_backups=2)
    p.start()
    assert finish(p)[-1].return_code == 0
    for name in ("stdout", "stderr"):
        if name in streams:
            line = name + "\n"
            assert log_content(taskpath, name) == line
            assert log_content(taskpath, name + ".1") == line * 10
            assert log_content(taskpath, name + ".2") == line * 10
            assert not os.path.exists(log_path(taskpath, name + ".3"))
        else:
            assert log_content(taskpath, name) == ""
            assert not os.path.exists(log_path(taskpath, name + ".1"))


def test_log_none(taskpath, sandbox):
    p = make(taskpath, sandbox, "echo hello world", logger_destination=LoggerDestination.NONE)
    p.start()
    assert finish(p)[-1].return_code == 0
    assert os.path.isdir(taskpath.getpath("process_logdir"))
    assert os.listdir(taskpath.getpath("process_logdir")) == []


@pytest.fixture
def console(td, monkeypatch):
    """Real files standing in for the coordinator's stdout and stderr; call it in the test body
    (pytest puts its own capture back on sys.stdout between setup and call)."""
    files = []

    def install():
        out = open(os.path.join(td, "sys_stdout"), "w+")
        err = open(os.path.join(td, "sys_stderr"), "w+")
        files.extend((out, err))
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        return out, err
    yield install
    for fp in files:
        fp.close()


def contents(fp):
    fp.seek(0)
    return fp.read()


def test_log_console(taskpath, sandbox, console):
    console = console()
    p = make(taskpath, sandbox, "echo hello world; echo >&2 hello stderr",
             logger_destination=LoggerDestination.CONSOLE)
    p.start()
    assert finish(p)[-1].return_code == 0
    assert contents(console[0]) == "hello world\n"
    assert contents(console[1]) == "hello stderr\n"
    assert os.listdir(taskpath.getpath("process_logdir")) == []


@pytest.mark.parametrize("mode", [LoggerMode.STANDARD, LoggerMode.ROTATE])
def test_log_both(taskpath, sandbox, console, mode):
    console = console()
    p = make(taskpath, sandbox, "echo hello world; echo >&2 hello stderr",
             logger_destination=LoggerDestination.BOTH, logger_mode=mode, rotate_log_size=1000,
             rotate_log_backups=1)
    p.start()
    assert finish(p)[-1].return_code == 0
    assert contents(console[0]) == log_content(taskpath, "stdout") == "hello world\n"
    assert contents(console[1]) == log_content(taskpath, "stderr") == "hello stderr\n"


# --- failures before the user process exists --------------------------------------------------------

@root_only
def test_failed_start_is_recorded_as_failed(taskpath, sandbox):
    p = make(taskpath, sandbox, "echo unreachable", chroot=True)  # an empty chroot has no bash
    p.start()
    forked, running, failed = finish(p)
    assert (running.state, running.pid) == (ProcessState.RUNNING, p.pid)
    assert (failed.state, failed.return_code) == (ProcessState.FAILED, 127)
    assert "cannot start process" in log_content(taskpath, "stderr")


def copy_with_libraries(binary, chroot):
    """Copy `binary` and the shared libraries ldd lists into `chroot`."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    paths = [binary] + [word for word in out.split() if word.startswith("/")]
    for path in paths:
        target = os.path.join(chroot, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(path, target)


@root_only
def test_chroot(taskpath, sandbox, td):
    if not shutil.which("ldd"):
        pytest.skip("needs ldd")
    copy_with_libraries("/bin/bash", sandbox)
    with open(os.path.join(sandbox, ".thermos_profile"), "w") as fp:
        fp.write("export FOO=inside\n")
    p = make(taskpath, sandbox, "echo $PWD $HOME $FOO $BASH_ENV; echo ok > /written; echo err >&2",
             chroot=True, logger_mode=LoggerMode.ROTATE, rotate_log_size=1000, rotate_log_backups=1)
    p.start()
    assert finish(p)[-1].state == ProcessState.SUCCESS
    me = pwd.getpwuid(os.getuid())
    assert log_content(taskpath, "stdout") == "/ %s inside /.thermos_profile\n" % me.pw_dir
    assert log_content(taskpath, "stderr") == "err\n"
    with open(os.path.join(sandbox, "written")) as fp:
        assert fp.read() == "ok\n"


# --- the runner may die at any point ----------------------------------------------------------------

RUNNER = """
import os, signal, sys
from thermos.common.path import TaskPath
from thermos.core.process import Process
td, cmdline, die_before_forked = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
taskpath = TaskPath(root=td, task_id="task", process="process", run=0, log_dir=td + "/.logs")

def fork():
    pid = os.fork()
    if pid and die_before_forked:
        with open(td + "/coordinator_pid", "w") as fp:
            fp.write(str(pid))
        os.kill(os.getpid(), signal.SIGKILL)
    return pid

Process("process", cmdline, 0, taskpath, td + "/sandbox", fork=fork).start()
os.kill(os.getpid(), signal.SIGKILL)  # the runner dies right after the fork
"""


def run_runner(td, cmdline, die_before_forked):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-c", RUNNER, td, cmdline, "1" if die_before_forked else "0"],
                          env=env).returncode


def test_coordinator_records_the_exit_after_the_runner_died(td, taskpath):
    assert run_runner(td, "sleep 0.5; echo survived", False) == -signal.SIGKILL
    recs = wait_for_state(taskpath.getpath("process_checkpoint"), TERMINAL)
    assert [r.state for r in recs] == [ProcessState.FORKED, ProcessState.RUNNING, ProcessState.SUCCESS]
    assert log_content(taskpath, "stdout") == "survived\n"


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as fp:
            return fp.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_coordinator_gives_up_at_once_when_the_runner_dies_before_forked(td, taskpath):
    assert run_runner(td, "echo never", True) == -signal.SIGKILL
    with open(os.path.join(td, "coordinator_pid")) as fp:
        pid = int(fp.read())
    wait_for(lambda: gone(pid), timeout=5.0, what="the coordinator to exit")
    assert records(taskpath.getpath("process_checkpoint")) == []
    assert not os.path.exists(log_path(taskpath, "stdout"))


def write_forked(path, **kw):
    with open(path, "a+b") as fp:
        writer = ThriftRecordWriter(fp)
        writer.write(RunnerCkpt(process_status=ProcessStatus(state=ProcessState.FORKED, **kw)))


def closed_pipe():
    r, w = os.pipe()
    os.close(w)
    return r


def test_control_falls_back_to_the_checkpoint(taskpath, sandbox):
    p = make(taskpath, sandbox, "true")
    p._pid, p._fork_time = 4242, 1000.5
    os.makedirs(os.path.dirname(p.ckpt_file()))
    write_forked(p.ckpt_file(), seq=0, process="process", fork_time=0.0, coordinator_pid=1)
    head = os.path.getsize(p.ckpt_file())
    r = closed_pipe()
    fd = os.open(p.ckpt_file(), os.O_RDONLY)  # the coordinator reads its own handle, not the path
    with pytest.raises(Process.CheckpointError):  # nothing after head
        p._wait_for_control(head, r, fd)
    write_forked(p.ckpt_file(), seq=7, process="process", fork_time=1000.5, coordinator_pid=4242)
    assert p._wait_for_control(head, r, fd) == 8
    os.close(r)
    os.close(fd)


@pytest.mark.parametrize("field, value", [
    ("process", "other"), ("fork_time", 1.0), ("coordinator_pid", 1), ("state", ProcessState.RUNNING)])
def test_control_rejects_a_forked_record_that_is_not_ours(taskpath, sandbox, field, value):
    p = make(taskpath, sandbox, "true")
    p._pid, p._fork_time = 4242, 1000.5
    status = ProcessStatus(seq=7, process="process", state=ProcessState.FORKED, fork_time=1000.5,
                           coordinator_pid=4242)
    setattr(status, field, value)
    with pytest.raises(Process.CheckpointError):
        p._check_control(RunnerCkpt(process_status=status))
    with pytest.raises(Process.CheckpointError):
        p._check_control(RunnerCkpt())


# --- mesos-containerizer -----------------------------------------------------------------------------

FAKE_CONTAINERIZER = """#!/bin/sh
if [ "$#" -eq 1 ]; then
  echo "{probe}" >&2
else
  printf '%s\\n' "$@"
  echo "HOME=$HOME BASH_ENV=$BASH_ENV PWD=$(pwd)"
fi
"""


@pytest.fixture
def containerizer(td, monkeypatch):
    mesos = os.path.join(td, "mesos")
    monkeypatch.setenv("MESOS_DIRECTORY", mesos)

    def make_fake(probe):
        path = os.path.join(td, "fake-mesos-containerizer")
        with open(path, "w") as fp:
            fp.write(FAKE_CONTAINERIZER.format(probe=probe))
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path, os.path.join(mesos, "taskfs")
    return make_fake


COMMAND = {"shell": False, "value": "/bin/bash", "arguments": ["/bin/bash", "-c", "echo hello world"]}


def run_containerized(taskpath, sandbox, path):
    p = make(taskpath, sandbox, "echo hello world", mesos_containerizer_path=path,
             container_sandbox="/mnt/mesos/sandbox")
    p.start()
    assert finish(p)[-1].return_code == 0
    return log_content(taskpath, "stdout").splitlines()


def test_containerizer_legacy_flags(taskpath, sandbox, containerizer):
    path, rootfs = containerizer("command_info")
    os.makedirs(os.path.join(rootfs, "mnt/mesos/sandbox"))
    with open(os.path.join(rootfs, "mnt/mesos/sandbox/.thermos_profile"), "w"):
        pass
    *args, env = run_containerized(taskpath, sandbox, path)
    me = pwd.getpwuid(os.getuid()).pw_name
    assert args[:6] == ["launch", "--unshare_namespace_mnt", "--working_directory=/mnt/mesos/sandbox",
                        "--rootfs=%s" % rootfs, "--user=%s" % me, args[5]]
    assert json.loads(args[5][len("--command="):]) == COMMAND and len(args) == 6
    assert env == "HOME=/mnt/mesos/sandbox BASH_ENV=/mnt/mesos/sandbox/.thermos_profile PWD=%s" % sandbox


def test_containerizer_launch_info(taskpath, sandbox, containerizer):
    path, rootfs = containerizer("launch_info")
    *args, env = run_containerized(taskpath, sandbox, path)
    assert args[:2] == ["launch", "--unshare_namespace_mnt"] and len(args) == 3
    assert args[2].startswith("--launch_info=")
    assert json.loads(args[2][len("--launch_info="):]) == {
        "rootfs": rootfs, "user": pwd.getpwuid(os.getuid()).pw_name,
        "working_directory": "/mnt/mesos/sandbox", "command": COMMAND}
    assert env == "HOME=/mnt/mesos/sandbox BASH_ENV= PWD=%s" % sandbox


def test_containerizer_runs_as_root_then_the_coordinator_drops(taskpath, sandbox, containerizer, other_user):
    user, _ = other_user
    path, _ = containerizer("launch_info")
    with open(path) as fp:
        script = fp.read()
    with open(path, "w") as fp:  # report who launched it, then stay up until told to go
        wait = "  id -u\n  while [ ! -e %s/go ]; do sleep 0.01; done\n" % sandbox
        fp.write(script.replace("else\n", "else\n" + wait))
    p = make(taskpath, sandbox, "true", user=user.pw_name, mesos_containerizer_path=path,
             container_sandbox="/mnt")
    p.start()
    try:
        wait_for_state(p.ckpt_file(), {ProcessState.RUNNING})
        wait_for(lambda: proc_status(p.pid)["Uid"].split()[0] == str(user.pw_uid), what="the drop")
    finally:
        open(os.path.join(sandbox, "go"), "w").close()
    assert finish(p)[-1].return_code == 0
    assert log_content(taskpath, "stdout").splitlines()[0] == "0"
    for name in ("stdout", "stderr"):
        assert os.stat(log_path(taskpath, name)).st_uid == user.pw_uid


def test_containerizer_without_mesos_directory_fails_the_run(taskpath, sandbox, containerizer, monkeypatch):
    path, _ = containerizer("launch_info")
    monkeypatch.delenv("MESOS_DIRECTORY")
    p = make(taskpath, sandbox, "true", mesos_containerizer_path=path, container_sandbox="/mnt")
    p.start()
    final = finish(p)[-1]
    assert (final.state, final.return_code) == (ProcessState.FAILED, 127)
    assert "MESOS_DIRECTORY" in log_content(taskpath, "stderr")

