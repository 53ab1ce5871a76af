import pytest

from thermos.common.path import TaskPath


def test_templates():
    p = TaskPath(root="/r", task_id="t", log_dir="/s/.logs")
    assert p.given(state="active").getpath("task_path") == "/r/tasks/active/t"
    assert p.getpath("checkpoint_path") == "/r/checkpoints/t"
    assert p.getpath("runner_checkpoint") == "/r/checkpoints/t/runner"
    assert p.given(process="hello").getpath("process_checkpoint") == "/r/checkpoints/t/coordinator.hello"
    assert p.getpath("process_logbase") == "/s/.logs"
    assert p.given(process="hello", run=2).getpath("process_logdir") == "/s/.logs/hello/2"


def test_root_prefix_and_log_dir():
    assert TaskPath(root="/var/lib/mesos").given(task_id="foo").getpath("checkpoint_path").startswith(
        "/var/lib/mesos")
    assert TaskPath(log_dir="sloth_love_chunk").given(task_id="foo").getpath(
        "process_logbase") == "sloth_love_chunk"


def test_none_values_are_rejected():
    with pytest.raises(ValueError, match="Key root is None"):
        TaskPath(root=None)
    with pytest.raises(ValueError, match="Key task_id is None"):
        TaskPath(root="/r").given(task_id=None)


def test_underspecified_and_unknown():
    with pytest.raises(TaskPath.UnderspecifiedPath):
        TaskPath(root="/r").getpath("runner_checkpoint")
    with pytest.raises(TaskPath.UnknownPath):
        TaskPath(root="/r").getpath("nope")


def test_partial_paths_refine_and_keep_filename():
    base = TaskPath(root="/r").with_filename("stdout")
    assert base.given(task_id="t").getpath("checkpoint_path") == "/r/checkpoints/t/stdout"
    assert base.given(task_id="t").given(task_id="u").getpath("checkpoint_path") == "/r/checkpoints/u/stdout"
