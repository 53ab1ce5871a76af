"""Exit codes and messages a script can trust: `thermos run`, `thermos_runner`, `inspect`, hints, `./dev`."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.cli.helpers import REPO
from thermos.common.ckpt import CheckpointDispatcher
from thermos.gen.thermos.ttypes import TaskState
from thermos.testing.wait import wait_until

RESOURCES = "resources = Resources(cpu = 0.1, ram = 16*MB, disk = 16*MB)"


def thermos(*args, stdin="", env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "thermos.cli.main", "--mesos-root", "", *args],
                          input=stdin, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def thermos_runner(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "thermos.runner", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def config(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def one_line(result, code, text):
    """The result failed with `code` and exactly one stderr line containing `text`."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def task_config(cmdline, name="t"):
    return "export(Task(name = '%s', processes = [Process(name = 'p', cmdline = '%s')], %s))\n" % (
        name, cmdline, RESOURCES)


# ---- a task with no processes ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["export(Task(name = 'x'))\n", "export(Task(name = 'x', processes = []))\n"])
def test_thermos_run_of_a_task_without_processes_is_one_line_and_102(tmp_path, text):
    path = config(tmp_path, "empty.thermos", text)
    result = thermos("--root", str(tmp_path / "root"), "run", "--sandbox", str(tmp_path / "sb"), path)
    one_line(result, 102, "%s: task 'x': has no processes (add at least one: processes = [Process(" % path)
    assert not os.path.exists(tmp_path / "root")  # nothing was recorded


@pytest.mark.parametrize("data, where", [({}, "unnamed task: has no processes and no name"),
                                         ({"name": "x"}, "task 'x': has no processes")])
def test_task_json_without_processes_is_one_line_and_102(tmp_path, data, where):
    path = config(tmp_path, "task.json", json.dumps(data))
    result = thermos("--root", str(tmp_path / "root"), "run", "--json", path)
    one_line(result, 102, "%s: %s" % (path, where))
    result = thermos_runner("--thermos_json", path, "--sandbox", str(tmp_path / "sb"),
                            "--checkpoint_root", str(tmp_path / "root"), "--task_id", "x1")
    one_line(result, 102, "thermos_runner: %s: %s" % (path, where))


def test_inspect_rejects_a_task_without_processes(tmp_path):
    path = config(tmp_path, "empty.thermos", "export(Task(name = 'x'))\n")
    result = thermos("inspect", path)
    one_line(result, 1, "thermos inspect: error: %s: task 'x': has no processes" % path)


# ---- thermos run's exit status follows the task ---------------------------------------------


@pytest.mark.parametrize("cmdline, code, state", [("true", 0, "SUCCESS"), ("exit 3", 1, "FAILED")])
def test_thermos_run_exits_by_the_final_state(tmp_path, cmdline, code, state):
    path = config(tmp_path, "t.thermos", task_config(cmdline))
    result = thermos("--root", str(tmp_path / "root"), "run", "--sandbox", str(tmp_path / "sb"),
                     "--task_id", "t1", path)
    assert result.returncode == code, result.stderr
    assert "Task t1 finished: %s\n" % state in result.stdout


@pytest.mark.parametrize("sig, code, state", [(signal.SIGTERM, 3, TaskState.KILLED),
                                              (signal.SIGUSR2, 4, TaskState.LOST)])
def test_thermos_run_exits_3_when_killed_and_4_when_lost(tmp_path, sig, code, state):
    root = str(tmp_path / "root")
    path = config(tmp_path, "t.thermos", task_config("exec sleep 300"))
    # Output to files, not pipes: the coordinators inherit them and may outlive a failed test.
    with open(tmp_path / "out", "w") as stdout, open(tmp_path / "err", "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "thermos.cli.main", "--mesos-root", "", "--root", root,
                                 "run", "--sandbox", str(tmp_path / "sb"), "--task_id", "t1", path],
                                stdout=stdout, stderr=stderr, cwd=REPO)
    try:
        checkpoint = os.path.join(root, "checkpoints", "t1", "runner")

        def running():
            replayed = CheckpointDispatcher.from_file(checkpoint) if os.path.exists(checkpoint) else None
            return replayed is not None and "p" in replayed.processes and replayed.processes["p"][-1].pid

        wait_until(running, timeout=30)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert proc.returncode == code, err
    assert CheckpointDispatcher.from_file(checkpoint).statuses[-1].state == state
    assert "Task t1 finished: %s" % TaskState._VALUES_TO_NAMES[state] in out


def test_rerunning_a_finished_task_id_runs_nothing_and_exits_105(tmp_path):
    root, sandbox = str(tmp_path / "root"), str(tmp_path / "sb")
    path = config(tmp_path, "t.thermos", task_config("exit 3"))
    assert thermos("--root", root, "run", "--sandbox", sandbox, "--task_id", "t1", path).returncode == 1
    checkpoint = os.path.join(root, "checkpoints", "t1", "runner")
    before = os.path.getsize(checkpoint)
    result = thermos("--root", root, "run", "--sandbox", sandbox, "--task_id", "t1", path)
    one_line(result, 105, "thermos run: error: task t1 already finished FAILED under %s; nothing was run "
                          "(pick a new --task_id)" % root)
    assert result.stdout == ""
    assert os.path.getsize(checkpoint) == before


def test_thermos_runner_on_a_finished_task_exits_105_with_one_line(tmp_path):
    root = str(tmp_path / "root")
    task_json = tmp_path / "task.json"
    inspect = thermos("inspect", "--task-json", config(tmp_path, "t.thermos", task_config("true")))
    task_json.write_text(inspect.stdout)
    args = ("--thermos_json", str(task_json), "--sandbox", str(tmp_path / "sb"), "--checkpoint_root", root,
            "--task_id", "t1")
    first = thermos_runner(*args)
    assert first.returncode == 0, first.stderr
    checkpoint = os.path.join(root, "checkpoints", "t1", "runner")
    before = os.path.getsize(checkpoint)
    result = thermos_runner(*args)
    assert result.returncode == 105
    assert result.stderr == (
        "thermos_runner: task t1 already finished SUCCESS under %s; nothing was run\n" % root)
    assert os.path.getsize(checkpoint) == before


@pytest.mark.parametrize("args, code, text", [
    (("run",), 2, "Should specify precisely one config"),
    (("run", "/nonexistent.thermos"), 102, "/nonexistent.thermos: no such config file"),
    (("run", "--user", "no_such_user_x", "CONFIG"), 104, "unknown user 'no_such_user_x'"),
    (("run", "PORTS"), 101, "ERROR!  Unbound ports: http"),
])
def test_thermos_run_cannot_run_codes(tmp_path, args, code, text):
    good = config(tmp_path, "t.thermos", task_config("true"))
    ports = config(tmp_path, "ports.thermos", task_config("echo {{thermos.ports[http]}}"))
    args = [{"CONFIG": good, "PORTS": ports}.get(arg, arg) for arg in args]
    one_line(thermos("--root", str(tmp_path / "root"), *args), code, text)


# ---- hints that used to mislead -------------------------------------------------------------


def test_config_errors_found_at_run_time_name_the_file(tmp_path):
    path = config(tmp_path, "bad.thermos", (
        "setup = Process(name = 'setup', cmdline = 'true')\n"
        "cleanup = Process(name = 'cleanup', cmdline = 'true', final = True)\n"
        "export(Task(name = 'ordered', processes = [setup, cleanup], constraints = order(setup, cleanup), "
        "%s))\n" % RESOURCES))
    result = thermos("--root", str(tmp_path / "root"), "run", path)
    one_line(result, 102, "thermos run: error: %s: task 'ordered': constraint order(setup, cleanup): mixes "
                          "final process 'cleanup' with regular process 'setup'" % path)


def test_a_config_exporting_nothing_mentions_export(tmp_path):
    path = config(tmp_path, "none.thermos", "p = Process(name = 'p', cmdline = 'true')\n")
    one_line(thermos("inspect", path), 1, "No tasks specified! (%s exports none: a .thermos file names its "
                                          "tasks with export(Task(...)))" % path)


def test_run_of_a_directory_says_it_is_a_directory(tmp_path):
    one_line(thermos("--root", str(tmp_path / "root"), "run", str(tmp_path)), 102,
             "%s is a directory, not a config (give a .thermos file, or task JSON with --json)" % tmp_path)


def test_read_of_a_directory_points_at_a_real_checkpoint(tmp_path):
    root = str(tmp_path / "root")
    path = config(tmp_path, "t.thermos", task_config("true"))
    ran = thermos("--root", root, "run", "--sandbox", str(tmp_path / "sb"), "--task_id", "t1", path)
    assert ran.returncode == 0, ran.stderr
    runner = os.path.join(root, "checkpoints", "t1", "runner")
    for directory in (root, os.path.join(root, "checkpoints"), os.path.join(root, "checkpoints", "t1")):
        result = thermos("--root", root, "read", directory)
        one_line(result, 1, "%s is a directory; give a runner checkpoint file, e.g. %s" % (directory, runner))
    assert thermos("--root", root, "read", runner).returncode == 0


def test_status_of_a_root_that_does_not_exist_says_so(tmp_path):
    missing = str(tmp_path / "nope")
    result = thermos("--root", missing, "status")
    one_line(result, 1, "No tasks found: checkpoint root %s does not exist" % missing)
    assert result.stdout == ""
    os.mkdir(missing)
    result = thermos("--root", missing, "status")
    assert result.returncode == 1 and result.stdout == "No tasks found.\n"


def test_task_json_comes_from_inspect_and_runs_under_thermos_runner(tmp_path):
    help_text = thermos_runner("--help").stdout
    assert "'thermos inspect --task-json CONFIG' writes it" in " ".join(help_text.split())
    path = config(tmp_path, "t.thermos", task_config("echo {{greeting}} from {{thermos.task_id}}"))
    result = thermos("inspect", "--task-json", "-E", "greeting=hello", path)
    assert result.returncode == 0, result.stderr
    task = json.loads(result.stdout)
    assert task["processes"][0]["cmdline"] == "echo hello from {{thermos.task_id}}"  # left to the runner
    (tmp_path / "task.json").write_text(result.stdout)
    run = thermos_runner("--thermos_json", str(tmp_path / "task.json"), "--sandbox", str(tmp_path / "sb"),
                         "--checkpoint_root", str(tmp_path / "root"), "--task_id", "j1")
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "sb" / ".logs" / "p" / "0" / "stdout") as fp:
        assert fp.read() == "hello from j1\n"
    unbound = thermos("inspect", "--task-json", path)  # the runner could not run this one
    one_line(unbound, 1, "unbound template variable {{greeting}}")


def test_help_run_prints_its_paragraph_once():
    result = thermos("help", "run")
    assert result.returncode == 0
    assert result.stdout.startswith("command run:\nRun a thermos task\n")
    assert result.stdout.count("Runs the task in the foreground") == 1
    assert "usage: thermos run" in result.stdout and "--daemon" in result.stdout


# ---- simplerun's sandbox --------------------------------------------------------------------


def test_simplerun_sandbox_is_under_the_root_and_nothing_is_left_in_tmp(tmp_path):
    root, tmp = str(tmp_path / "root"), tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    result = thermos("--root", root, "simplerun", "--task_id", "s1", "--", "echo", "hi", env=env)
    assert result.returncode == 0, result.stderr
    assert "sandbox %s/sandbox/s1)" % root in result.stdout
    state = CheckpointDispatcher.from_file(os.path.join(root, "checkpoints", "s1", "runner"))
    assert state.header.sandbox == os.path.join(root, "sandbox", "s1")
    result = thermos("--root", root, "simplerun", "--sandbox", str(tmp_path / "elsewhere"), "--task_id", "s2",
                     "--", "false", env=env)
    assert result.returncode == 1  # FAILED, like thermos run
    assert os.path.isdir(tmp_path / "elsewhere" / "s2")
    assert os.listdir(tmp) == []


# ---- ./dev ----------------------------------------------------------------------------------


def dev(*args):
    return subprocess.run([os.path.join(REPO, "dev"), *args], capture_output=True, text=True, timeout=60)


def test_dev_help_lists_every_command_and_no_shell_code():
    result = dev("help")
    assert result.returncode == 0 and result.stderr == ""
    assert "set -euo" not in result.stdout
    for command in ("demo", "test", "bench", "lint", "package", "shell"):
        assert "./dev %s" % command in result.stdout


def test_dev_unknown_command_says_so_and_exits_2():
    result = dev("nosuch")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("dev: unknown command 'nosuch'\n") and "./dev shell" in result.stderr


def test_dev_installs_python3_venv():
    """On a bare Debian `python3 -m venv` needs python3-venv: it is among the packages ./dev installs."""
    script = 'eval "$(grep "^apt_packages=" dev)"; echo "${apt_packages[@]}"'
    packages = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO,
                              check=True).stdout.split()
    assert "python3-venv" in packages
