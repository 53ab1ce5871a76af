"""No process escapes, whichever path kills the task (cgroup, or the environment marker).

Each task double-forks two `setsid()` sleepers (one ignoring SIGTERM) and then waits. After each
kill path, a machine-wide scan for the task's unique marker must find nothing alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from thermos.core import containment
from thermos.gen.thermos.ttypes import TaskState
from thermos.testing.runner import RunnerHarness
from thermos.testing.wait import wait_until

from .runner_util import proc, task

ESCAPER = (
    "setsid -f bash -c 'trap \"\" TERM; exec -a {mark}-deaf sleep 3000' < /dev/null > /dev/null 2>&1; "
    "setsid -f bash -c 'exec -a {mark}-plain sleep 3000' < /dev/null > /dev/null 2>&1; "
    "echo ready > ready; exec sleep 3000"
)


def survivors(mark: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as fp:
                if mark.encode() in fp.read():
                    with open("/proc/%s/stat" % entry) as st:
                        if st.read().rsplit(")", 1)[1].split()[0] != "Z":
                            found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.fixture(params=["cgroup", "marker"])
def containment_mode(request, monkeypatch):
    if request.param == "cgroup":
        if os.geteuid() != 0:
            pytest.skip("cgroups need root")
        if containment.TaskCgroup.for_task("/x", "y") is None:
            pytest.skip("no writable cgroup hierarchy on this host")
    else:
        monkeypatch.setenv("THERMOS_CGROUP", "off")
    return request.param


def start_escaper(tmp_path, mode: str) -> tuple[RunnerHarness, subprocess.Popen, str]:
    mark = "thermos-escape-%s" % uuid.uuid4().hex[:12]
    env = dict(os.environ)
    harness = RunnerHarness(task(proc("escaper", ESCAPER.format(mark=mark))), root=str(tmp_path), env=env)
    runner = harness.start()
    wait_until(lambda: os.path.exists(os.path.join(harness.sandbox, "ready")), timeout=30)
    wait_until(lambda: len(survivors(mark)) == 2, timeout=10)  # both daemons are up
    return harness, runner, mark


def assert_nothing_left(mark: str) -> None:
    wait_until(lambda: not survivors(mark), timeout=15)


def thermos_kill(harness: RunnerHarness) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thermos.cli.main", "--root", harness.checkpoint_root,
                           "--mesos-root", "", "kill", "^%s$" % harness.task_id],
                          input="y\n", capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("sig, outcome", [(signal.SIGUSR1, TaskState.KILLED),
                                         (signal.SIGUSR2, TaskState.LOST)])
def test_runner_signals_leave_nothing(tmp_path, containment_mode, sig, outcome):
    harness, runner, mark = start_escaper(tmp_path, containment_mode)
    os.kill(runner.pid, sig)
    result = harness.finish(runner, timeout=120)
    assert result.task_state == outcome, result.stderr
    assert_nothing_left(mark)


def test_thermos_kill_leaves_nothing(tmp_path, containment_mode):
    harness, runner, mark = start_escaper(tmp_path, containment_mode)
    done = thermos_kill(harness)
    assert done.returncode == 0, done.stdout + done.stderr
    runner.wait(timeout=60)
    assert_nothing_left(mark)


def test_forced_kill_from_another_process_leaves_nothing(tmp_path, containment_mode):
    harness, runner, mark = start_escaper(tmp_path, containment_mode)
    script = ("import sys; from thermos.core.runner import TaskRunner; "
              "r = TaskRunner.get(sys.argv[1], sys.argv[2]); r.kill(force=True, preemption_wait=5)")
    subprocess.run([sys.executable, "-c", script, harness.task_id, harness.checkpoint_root],
                   check=True, timeout=120)
    runner.wait(timeout=60)
    assert_nothing_left(mark)


def test_dead_runner_then_thermos_kill_leaves_nothing(tmp_path, containment_mode):
    harness, runner, mark = start_escaper(tmp_path, containment_mode)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    assert len(survivors(mark)) == 2  # orphaned to pid 1 (or a subreaper), out of every tree
    done = thermos_kill(harness)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_nothing_left(mark)


def test_restarted_runner_then_sigusr1_leaves_nothing(tmp_path, containment_mode):
    harness, runner, mark = start_escaper(tmp_path, containment_mode)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    again = harness.start()  # same flags: it takes over the task
    harness.wait_for(lambda s: len(s.statuses) >= 2)
    os.kill(again.pid, signal.SIGUSR1)
    result = harness.finish(again, timeout=120)
    assert result.task_state == TaskState.KILLED, result.stderr
    assert_nothing_left(mark)


def test_sigterm_reaches_a_server_under_bash_c(tmp_path):
    """Aurora signalled the shell only; the workload never ran its SIGTERM handler."""
    server = ("%s -c 'import signal, sys, time\n"
              "def bye(*_):\n    open(\"termed\", \"w\").write(\"1\"); sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, bye); open(\"up\", \"w\").write(\"1\")\n"
              "while True: time.sleep(1)'; echo after" % sys.executable)
    harness = RunnerHarness(task(proc("server", server)), root=str(tmp_path))
    runner = harness.start()
    wait_until(lambda: os.path.exists(os.path.join(harness.sandbox, "up")), timeout=30)
    os.kill(runner.pid, signal.SIGUSR1)
    result = harness.finish(runner, timeout=120)
    assert result.task_state == TaskState.KILLED
    assert os.path.exists(os.path.join(harness.sandbox, "termed"))


def test_the_cgroup_is_recorded_and_nested_under_the_runners_own(tmp_path):
    """Under a Mesos agent the runner's cgroup is the container's: the task must stay inside it
    (its limits, the agent's freezer), and a later killer must find it from the checkpoint."""
    if os.geteuid() != 0 or containment.TaskCgroup.for_task("/x", "y") is None:
        pytest.skip("cgroups need root and a writable hierarchy")
    harness = RunnerHarness(task(proc("p", "exec sleep 300")), root=str(tmp_path))
    runner = harness.start()
    run = harness.wait_for_running("p")
    header = harness.wait_for(lambda s: s.header)
    expected_parent = os.path.dirname(containment.TaskCgroup.for_task("/x", "y").path)
    assert os.path.dirname(header.cgroup) == expected_parent
    assert os.path.basename(header.cgroup).startswith("thermos.harness_task.")
    with open("/proc/%d/cgroup" % run.pid) as fp:  # the task's process is a member
        memberships = [line.rstrip("\n").split(":", 2)[2] for line in fp]
    assert any(path != "/" and header.cgroup.endswith(path) and containment.PREFIX in path
               for path in memberships)
    os.kill(runner.pid, signal.SIGUSR1)
    assert harness.finish(runner, timeout=60).task_state == TaskState.KILLED
    assert not os.path.exists(header.cgroup)  # removed once the task is over
