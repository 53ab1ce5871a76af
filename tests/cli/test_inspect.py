import ast

import pytest

from tests.cli.helpers import thermos

CONFIG = """
web = Process(name = 'web', cmdline = 'serve --port {{thermos.ports[http]}} --version {{version}}')
export(Task(name = 'web_task', processes = [web],
            resources = Resources(cpu = 0.5, ram = 64*MB, disk = 64*MB)))
export(Task(name = 'other', processes = [web], resources = Resources(cpu = 1, ram = 64*MB, disk = 64*MB)))
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "web.thermos"
    path.write_text(CONFIG)
    return str(path)


def test_inspect_prints_the_interpolated_task(capsys, tmp_path, config):
    result = thermos(capsys, str(tmp_path), "inspect", "--task", "web_task", "-P", "http:8080",
                     "-E", "version=1.2", config)
    assert result.code == 0, result.err
    assert result.out.startswith("{   'constraints': (),")  # pprint, indent 4, as Aurora printed it
    task = ast.literal_eval(result.out)
    assert task["name"] == "web_task" and task["resources"]["cpu"] == 0.5
    [process] = task["processes"]
    assert process["cmdline"] == "serve --port 8080 --version 1.2"


@pytest.mark.parametrize("args, message", [
    (("--task", "nope"), "Could not find task nope!"),
    ((), "Multiple tasks in config but no task name specified!"),
])
def test_inspect_task_selection_errors(capsys, tmp_path, config, args, message):
    result = thermos(capsys, str(tmp_path), "inspect", *args, config)
    assert result.code == 1 and result.err == "thermos inspect: error: %s\n" % message


def test_inspect_config_errors_are_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.thermos"
    bad.write_text("x = (\n")
    empty = tmp_path / "empty.thermos"
    empty.write_text("")
    for args, message in ((("/nonexistent.thermos",), "/nonexistent.thermos"),
                          ((str(bad),), "SyntaxError"),
                          ((str(empty),), "No tasks specified!"),
                          ((), "Should specify precisely one config")):
        result = thermos(capsys, str(tmp_path), "inspect", *args)
        assert result.code == 1 and result.err.count("\n") == 1 and message in result.err
