"""Aurora-era wrappers calling `simplerun(args, options)` and `really_run(...)` as functions."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import types

import pytest

from thermos.cli.commands.simplerun import really_run, simple_task, simplerun
from thermos.cli.common import CommandError
from thermos.common.ckpt import CheckpointDispatcher
from thermos.config.loader import ThermosTaskWrapper
from thermos.gen.thermos.ttypes import ProcessState, TaskState

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What a wrapper written for Aurora looks like, with `thermos.` in place of `apache.thermos.`.
WRAPPER = textwrap.dedent("""
    import getpass, sys, types
    from thermos.cli.commands.simplerun import simplerun

    options = types.SimpleNamespace(root=sys.argv[1], user=getpass.getuser(), name=sys.argv[2],
                                    task_id=sys.argv[3], prebound_ports={PORTS}, bindings={BINDINGS},
                                    daemon=False)
    sys.exit(simplerun(sys.argv[4:], options))
""")


def run_wrapper(tmp_path, root, name, task_id, args, ports="[]", bindings="{}"):
    script = tmp_path / "wrapper.py"
    script.write_text(WRAPPER.replace("{PORTS}", ports).replace("{BINDINGS}", bindings))
    return subprocess.run([sys.executable, str(script), root, name, task_id, *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO)


@pytest.fixture
def finished_task():
    """Read a finished task's checkpoint and JSON; its sandbox must lie under the root."""

    def read(root, task_id):
        state = CheckpointDispatcher.from_file(os.path.join(root, "checkpoints", task_id, "runner"))
        assert state.header.sandbox == os.path.join(root, "sandbox", task_id)
        with open(os.path.join(root, "tasks", "finished", task_id)) as fp:
            return state, json.load(fp)

    return read


def test_simplerun_function_runs_the_words_after_double_dash(tmp_path, finished_task):
    root = str(tmp_path / "root")
    result = run_wrapper(tmp_path, root, "simple", "s1", ["--", "echo", "hello", "world"])
    assert result.returncode == 0, result.stderr
    assert "Running command: 'echo hello world'" in result.stdout
    state, task_json = finished_task(root, "s1")
    assert task_json["name"] == "simple"
    assert [(p["name"], p["cmdline"]) for p in task_json["processes"]] == [("simple", "echo hello world")]
    assert task_json["resources"] == {"cpu": 1.0, "ram": 256 * 1024 * 1024, "disk": 0, "gpu": 0}
    assert state.statuses[-1].state == TaskState.SUCCESS
    assert state.header.sandbox and os.path.isdir(state.header.sandbox)
    with open(os.path.join(state.header.log_dir, "simple", "0", "stdout")) as fp:
        assert fp.read() == "hello world\n"


def test_simplerun_function_binds_ports_and_environment(tmp_path, finished_task):
    root = str(tmp_path / "root")
    result = run_wrapper(tmp_path, root, "greet", "g1",
                         ["echo", "hello", "{{who}}", "{{thermos.ports[http]}}"],
                         ports="{'http': 8123}", bindings="{'who': 'aurora'}")
    assert result.returncode == 0, result.stderr
    state, task_json = finished_task(root, "g1")
    assert list(state.processes) == ["greet"]
    assert state.processes["greet"][-1].state == ProcessState.SUCCESS
    assert dict(state.header.ports) == {"http": 8123}
    with open(os.path.join(state.header.log_dir, "greet", "0", "stdout")) as fp:
        assert fp.read() == "hello aurora 8123\n"


def test_errors_raise_one_line_command_errors_instead_of_exiting(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where simplerun's sandboxes go
    options = types.SimpleNamespace(root=str(tmp_path / "root"), user=None, name="simple", task_id=None,
                                    prebound_ports=[], bindings={}, daemon=False)
    with pytest.raises(CommandError, match="no command given"):
        simplerun(["--"], options)
    with pytest.raises(CommandError, match=r"^ERROR!  Unbound ports: http \(bind each with -P NAME:PORT\)$"):
        simplerun(["--", "echo", "{{thermos.ports[http]}}"], options)
    wrapper = ThermosTaskWrapper(simple_task("p", "echo {{thermos.ports[admin]}}"), strict=False)
    with pytest.raises(CommandError, match="Unbound ports: admin"):
        really_run(wrapper, str(tmp_path / "root"), str(tmp_path / "sandbox"))
    assert not os.path.exists(tmp_path / "root")  # nothing was started or recorded
    assert not [name for name in os.listdir(tmp_path) if name.startswith("thermos-simplerun-")]
