"""`thermos run` and `thermos simplerun`, end to end through the real CLI entry point."""

import os
import subprocess
import sys

from thermos.common.ckpt import CheckpointDispatcher
from thermos.gen.thermos.ttypes import ProcessState, TaskState

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def thermos(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "thermos.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout)


def only_task(root):
    finished = os.listdir(os.path.join(root, "tasks", "finished"))
    assert len(finished) == 1
    runner_ckpt = os.path.join(root, "checkpoints", finished[0], "runner")
    return finished[0], CheckpointDispatcher.from_file(runner_ckpt)


def test_run_example_reports_outcome_and_checkpoints(tmp_path):
    root, sandbox = str(tmp_path / "root"), str(tmp_path / "sandbox")
    result = thermos("--root", root, "run", "--sandbox", sandbox, "--task_id", "ordered1",
                     os.path.join(EXAMPLES, "ordered.thermos"))
    assert result.returncode == 0, result.stderr
    assert "Task ordered1 finished: SUCCESS" in result.stdout
    task_id, state = only_task(root)
    assert task_id == "ordered1"
    assert state.header.sandbox == os.path.join(sandbox, "ordered1")
    assert [runs[-1].state for runs in state.processes.values()] == [ProcessState.SUCCESS] * 3
    with open(os.path.join(sandbox, "ordered1", ".logs", "server", "0", "stdout")) as fp:
        assert "serving request 3 for ordered1" in fp.read()


def test_flaky_example_retries(tmp_path):
    root = str(tmp_path / "root")
    result = thermos("--root", root, "run", "--sandbox", str(tmp_path / "sb"), "--task_id", "flaky1",
                     os.path.join(EXAMPLES, "flaky.thermos"))
    assert result.returncode == 0, result.stderr
    _, state = only_task(root)
    assert [r.state for r in state.processes["flaky"]] == [ProcessState.FAILED] * 2 + [ProcessState.SUCCESS]
    assert state.statuses[-1].state == TaskState.SUCCESS


def test_simplerun(tmp_path):
    root = str(tmp_path / "root")
    result = thermos("--root", root, "simplerun", "--task_id", "s1", "--", "echo", "hello", "world")
    assert result.returncode == 0, result.stderr
    assert "Running command: 'echo hello world'" in result.stdout
    _, state = only_task(root)
    assert list(state.processes) == ["simple"]
    with open(os.path.join(state.header.log_dir, "simple", "0", "stdout")) as fp:
        assert fp.read() == "hello world\n"


def test_run_errors_are_one_line(tmp_path):
    root = str(tmp_path / "root")
    cases = [
        (["run", str(tmp_path / "missing.thermos")], "no such config file"),
        (["run"], "Should specify precisely one config"),
        (["run", "--user", "no_such_user_x", os.path.join(EXAMPLES, "hello_world.thermos")], "unknown user"),
        (["simplerun"], "no command given"),
    ]
    bad = tmp_path / "ports.thermos"
    bad.write_text("export(Task(name='t', processes=[Process(name='p', "
                   "cmdline='echo {{thermos.ports[http]}}')], resources=Resources(cpu=1, ram=1, disk=1)))\n")
    cases.append((["run", str(bad)], "Unbound ports: http"))
    for args, message in cases:
        result = thermos("--root", root, *args)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
