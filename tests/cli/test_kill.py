"""`thermos kill`: regexes are said to be regexes and confirmed; a live runner stops its own task."""

import os
import signal

import pytest

from tests.cli.helpers import thermos_proc
from tests.monitoring.fixtures import make_task as synthetic_task
from thermos.config.schema import Process, Resources, Task
from thermos.gen.thermos.ttypes import ProcessState, TaskState
from thermos.testing.runner import RunnerHarness
from thermos.testing.wait import wait_until

RESOURCES = Resources(cpu=0.1, ram=16 * 1024 * 1024, disk=16 * 1024 * 1024)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as fp:
            return fp.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def active(root, task_id):
    return os.path.exists(os.path.join(root, "tasks", "active", task_id))


# ---- which tasks, and asking first ----------------------------------------------------------


@pytest.fixture
def root(tmp_path):
    """Active tasks without runners (hand-built checkpoints): web_1, web_2 and db_1."""
    root = str(tmp_path / "root")
    for task_id in ("web_1", "web_2", "db_1"):
        synthetic_task(root, task_id, state="active")
    return root


@pytest.mark.parametrize("answer", ["n\n", ""])
def test_a_regex_lists_its_matches_and_kills_nothing_unless_confirmed(root, answer):
    result = thermos_proc(root, "kill", "web", stdin=answer)
    assert result.code == 1
    assert result.out.startswith(
        "'web' is a regular expression (re.match against active task ids); 2 tasks matched:\n"
        "  web_1                (%s)\n"
        "  web_2                (%s)\n"
        "Kill all 2 [y/N]? " % (root, root))
    assert "Killing" not in result.out
    assert result.err == ("thermos kill: error: not confirmed, nothing was killed (answer y, pass --yes, "
                          "or give exact task ids)\n")
    assert active(root, "web_1") and active(root, "web_2")


def test_a_confirmed_regex_kills_every_match(root):
    result = thermos_proc(root, "kill", "web", stdin="y\n")
    assert result.code == 0, result.err
    assert result.out.endswith("Kill all 2 [y/N]? Killing web_1...done.\nKilling web_2...done.\n")
    assert not active(root, "web_1") and not active(root, "web_2") and active(root, "db_1")


@pytest.mark.parametrize("flag", ["--yes", "-y", "--force"])
def test_yes_kills_without_asking(root, flag):
    result = thermos_proc(root, "kill", flag, "web.*")
    assert result.code == 0 and result.out == "Killing web_1...done.\nKilling web_2...done.\n", result.err
    assert active(root, "db_1")


def test_exact_task_ids_are_killed_without_asking_as_aurora_scripts_expect(root):
    result = thermos_proc(root, "kill", "web_1", "db_1")
    assert result.code == 0 and result.err == ""
    assert sorted(result.out.splitlines()) == ["Killing db_1...done.", "Killing web_1...done."]
    assert active(root, "web_2")


def test_an_exact_id_that_also_prefixes_another_task_asks(root):
    synthetic_task(root, "web_10", state="active")
    result = thermos_proc(root, "kill", "web_1", stdin="")
    assert result.code == 1 and "2 tasks matched:\n  web_1 " in result.out and "  web_10 " in result.out
    assert active(root, "web_1") and active(root, "web_10")


# ---- a live runner stops its own task -------------------------------------------------------


def start(tmp_path, final_cmdline="echo finalized", **task_kw):
    task = Task(name="k", resources=RESOURCES, processes=[
        Process(name="main", cmdline="exec sleep 300", min_duration=0),
        Process(name="fin", cmdline=final_cmdline, final=True, min_duration=0)], **task_kw)
    harness = RunnerHarness(task, root=str(tmp_path), task_id="k1")
    runner = harness.start()
    try:
        run = harness.wait_for_running("main")
    except BaseException:
        runner.kill()
        runner.wait()
        raise
    return harness, runner, run


def finish(harness, runner):
    """The runner's exit status and the task as its checkpoint tells it, once the runner is gone."""
    return harness.finish(runner, timeout=60)


def test_a_live_runner_is_signalled_and_runs_the_finalizers(tmp_path):
    harness, runner, run = start(tmp_path)
    result = thermos_proc(harness.checkpoint_root, "kill", "k1")
    assert result.code == 0 and result.out == "Killing k1...done.\n" and result.err == ""
    ended = finish(harness, runner)
    # Aurora SIGKILLed the runner and took over: exit -9 and no finalizer. Here the runner ends
    # the task itself, as after the executor's SIGUSR1.
    assert ended.returncode == 0, ended.stderr
    state = ended.reconstructed_state
    assert state.statuses[-1].state == TaskState.KILLED and state.statuses[-1].runner_pid == runner.pid
    assert [r.state for r in state.processes["fin"]] == [ProcessState.SUCCESS]
    assert not alive(run.pid)


def test_a_dead_runner_is_taken_over(tmp_path):
    harness, runner, run = start(tmp_path)
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=30)
    result = thermos_proc(harness.checkpoint_root, "kill", "k1")
    assert result.code == 0 and result.out == "Killing k1...done.\n" and result.err == ""
    ended = harness.result(runner.returncode, "", "", runner_pids=[runner.pid])
    last = ended.reconstructed_state.statuses[-1]
    assert last.state == TaskState.KILLED and last.runner_pid not in (0, runner.pid)
    wait_until(lambda: not alive(run.pid), timeout=10)


def test_a_stopped_runner_is_taken_over_at_once(tmp_path):
    harness, runner, run = start(tmp_path)
    runner.send_signal(signal.SIGSTOP)
    try:
        result = thermos_proc(harness.checkpoint_root, "kill", "--wait", "600", "k1", timeout=60)
    finally:
        runner.send_signal(signal.SIGCONT)
    assert result.code == 0 and result.out == "Killing k1...done.\n", result.err
    assert result.err == "thermos kill: k1: its runner (pid %d) is stopped; took over from it\n" % runner.pid
    assert finish(harness, runner).returncode == -signal.SIGKILL
    wait_until(lambda: not alive(run.pid), timeout=10)


def test_a_runner_that_does_not_end_the_task_within_the_wait_is_taken_over(tmp_path):
    harness, runner, run = start(tmp_path, final_cmdline="exec sleep 300", finalization_wait=300)
    result = thermos_proc(harness.checkpoint_root, "kill", "--wait", "1", "k1")
    assert result.code == 0 and result.out == "Killing k1...done.\n", result.err
    assert result.err == ("thermos kill: k1: its runner (pid %d) did not stop the task within 1 s; took "
                          "over from it\n" % runner.pid)
    ended = finish(harness, runner)
    assert ended.returncode == -signal.SIGKILL
    assert ended.task_state == TaskState.KILLED
    finalizer = ended.runs("fin")[-1]
    assert finalizer.state == ProcessState.KILLED  # the finalizer was running when the wait ran out
    wait_until(lambda: not alive(run.pid) and not alive(finalizer.pid), timeout=10)


def test_kill_rejects_a_bad_wait(root):
    result = thermos_proc(root, "kill", "--wait", "soon", "web_1")
    assert result.code == 2 and "expected a number of seconds, got 'soon'" in result.err
