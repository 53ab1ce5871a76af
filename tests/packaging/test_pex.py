"""The pex files on a clean interpreter: `/usr/bin/python3 -I`, no virtualenv, nothing pip-installed.

The executor pex is run by the stand-in Mesos agent through a task that succeeds and one that is
killed; its thermos_runner must come from inside the same file, not from this virtualenv."""

from __future__ import annotations

import importlib.util
import os
import shlex
import signal
import subprocess
import urllib.request

import pytest

from tests.executor.parts.payloads import mesos_job, task_info_data, thermos_task
from tests.harness.executor import alive, free_port, runner_state
from tests.harness.mesos import dump_executors
from tests.packaging.conftest import COMMANDS, SYSTEM_PYTHON
from thermos.gen.thermos.ttypes import TaskState
from thermos.testing.wait import wait_until

T = 90.0
BUILD_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "packaging", "build.py")
VENV = os.path.dirname(os.path.dirname(os.path.abspath(__import__("sys").executable)))


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_a_clean_interpreter(dist, clean_env, command):
    proc = subprocess.run([SYSTEM_PYTHON, "-I", os.path.join(dist, command + ".pex"), "--help"],
                          env=clean_env, capture_output=True, text=True, timeout=T)
    assert proc.returncode == 0, proc.stderr
    usage = "usage: %s" % command if command != "thermos" else "thermos\n\ncommands:"
    assert proc.stdout.startswith(usage), proc.stdout[:300]
    assert proc.stderr == ""


def test_the_executor_file_carries_the_runner(dist, clean_env):
    env = dict(clean_env, PEX_MODULE="thermos.runner")
    proc = subprocess.run([SYSTEM_PYTHON, "-I", os.path.join(dist, "thermos_executor.pex"), "--help"],
                          env=env, capture_output=True, text=True, timeout=T)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: thermos_runner"), proc.stderr


def launch_pex(agent, dist, pex_root, cmdline, task_id="t1"):
    executor_id = "thermos-" + task_id
    command = "%s -I %s --nosetuid" % (SYSTEM_PYTHON, shlex.quote(os.path.join(dist, "thermos_executor.pex")))
    # a bare host's environment: the agent's own is this test's, which has the virtualenv on PATH
    env = {"PEX_ROOT": pex_root, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "VIRTUAL_ENV": "", "PYTHONPATH": ""}
    run = agent.launch_executor(executor_id, command, env=env)
    data = task_info_data(mesos_job(thermos_task(("main", cmdline))), task_id=task_id)
    agent.launch_task(executor_id, agent.task_info(task_id, data, executor_id=executor_id))
    return run


def runner_cmdline(run):
    """The argv of the thermos_runner the executor started (its pid is in the executor's log)."""
    marker = "Started thermos_runner pid "
    line = wait_until(lambda: next((ln for ln in run.log_text().splitlines() if marker in ln), None),
                      timeout=T)
    pid = int(line.split(marker)[1].split()[0])
    with open("/proc/%d/cmdline" % pid, "rb") as fp:
        return [a.decode() for a in fp.read().split(b"\0") if a]


def test_executor_pex_runs_a_task_under_the_agent(mesos_agent, dist, pex_root):
    agent = mesos_agent
    run = launch_pex(agent, dist, pex_root, "echo hello from the pex")
    update = agent.wait_terminal("t1", T)
    assert agent.wait_exit(run.executor_id, T) == 0, dump_executors(agent)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"], dump_executors(agent)
    assert update.message == "Task finished."
    assert runner_state(run, "t1").statuses[-1].state == TaskState.SUCCESS
    with open(os.path.join(run.directory, "sandbox", ".logs", "main", "0", "stdout")) as fp:
        assert fp.read() == "hello from the pex\n"
    assert agent.violations == []


def test_executor_pex_kills_a_task_and_its_runner_is_the_packaged_one(mesos_agent, dist, pex_root):
    agent = mesos_agent
    run = launch_pex(agent, dist, pex_root, "echo $$ > main.pid && exec sleep 600")
    agent.wait_for(lambda: "TASK_RUNNING" in agent.states("t1"), T, "TASK_RUNNING\n" + dump_executors(agent))
    argv = runner_cmdline(run)
    assert argv[1:3] == ["-m", "thermos.runner"] and argv[0].startswith(pex_root), argv
    assert not argv[0].startswith(VENV)
    pid_file = os.path.join(run.directory, "sandbox", "main.pid")
    pid = int(wait_until(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(), timeout=T))
    agent.kill("t1")
    update = agent.wait_terminal("t1", T)
    assert agent.wait_exit(run.executor_id, T) == 0, dump_executors(agent)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert update.message == "Instructed to kill task."
    assert not alive(pid)
    assert runner_state(run, "t1").statuses[-1].state == TaskState.KILLED


def test_observer_pex_serves_health(dist, clean_env, tmp_path):
    port = free_port()
    empty = tmp_path / "root"
    empty.mkdir()
    proc = subprocess.Popen([SYSTEM_PYTHON, "-I", os.path.join(dist, "thermos_observer.pex"),
                             "--root", str(empty), "--mesos-root", "", "--ip", "127.0.0.1",
                             "--port", str(port), "--state_dir", ""],
                            env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def health():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=2) as resp:
                    return resp.status, resp.read().decode()
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                return None
        status, body = wait_until(health, timeout=T, interval=0.1)
        assert status == 200 and body.strip().lower() == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=T) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_second_build_gives_the_same_bytes(built, tmp_path):
    """The README's reproducibility claim, on one file: wheels and pex built again from the snapshot."""
    spec = importlib.util.spec_from_file_location("thermos_packaging_build", BUILD_PY)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    wheels, out = str(tmp_path / "wheels"), str(tmp_path / "out")
    os.makedirs(out)
    build.build_wheels(os.path.join(built["build_dir"], "src"), wheels, str(tmp_path), str(tmp_path / "log"))
    again = build.build_pex("thermos_runner", "thermos_runner", wheels, out, str(tmp_path / "log"))
    with open(again, "rb") as a, open(os.path.join(built["out"], "thermos_runner.pex"), "rb") as b:
        assert a.read() == b.read()
