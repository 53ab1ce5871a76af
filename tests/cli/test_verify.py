"""`thermos verify` on tasks really run by thermos_runner (tests/cli/live.py), intact and broken.

Also checks every claim the README and docs/operator.md make about it: the summary and problem
line formats, notes, exit codes 0/1/2, --json, and task ids vs paths.
"""

from __future__ import annotations

import json
import os

from tests.cli.helpers import thermos, thermos_proc
from tests.common.test_verify import copy_task, find, frames, is_process, offset_of
from thermos.gen.thermos.ttypes import ProcessState


def summary(task_id: str, root: str, state: str, coordinators: int = 1, extra: str = "") -> str:
    records = len(frames(os.path.join(root, "checkpoints", task_id, "runner")))
    return "%s: %s (%d runner records, %d coordinator checkpoint%s, state %s)" % (
        task_id, extra or "consistent", records, coordinators, "" if coordinators == 1 else "s", state)


def fresh_copy(live, tmp_path, task_id: str = "hello_ok", name: str = "root") -> tuple[str, str]:
    """A root holding a copy of one live-fixture task; returns (root, its runner checkpoint)."""
    root = str(tmp_path / name)
    ckpt_dir = copy_task(live.root, task_id, root)
    return root, os.path.join(ckpt_dir, "runner")


def flip(path: str, index: int) -> int:
    """Damage the payload of record `index` so that it no longer decodes; returns its offset."""
    offset = offset_of(path, index)
    with open(path, "r+b") as fp:
        fp.seek(offset + 4)
        fp.write(b"\x7f")
    return offset


def test_help_lists_verify(capsys, live):
    result = thermos(capsys, live.root, "help")
    line = "    %-10s\t%s" % ("verify", "Check that task checkpoints are consistent.")
    assert line in result.out.splitlines()
    result = thermos(capsys, live.root, "help", "verify")
    assert result.code == 0 and "--json" in result.out and "Exit status: 0 when" in result.out


def test_real_tasks_are_consistent(capsys, live):
    result = thermos(capsys, live.root, "verify", "hello_ok", "hello_fail", "hello_active")
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        summary("hello_ok", live.root, "SUCCESS"),
        summary("hello_fail", live.root, "FAILED"),
        summary("hello_active", live.root, "ACTIVE")]


def test_a_checkpoint_directory_or_runner_file_names_the_task_too(capsys, live):
    ckpt_dir = os.path.join(live.root, "checkpoints", "hello_ok")
    for target in (ckpt_dir, os.path.join(ckpt_dir, "runner"), ckpt_dir + "/"):
        result = thermos(capsys, "/nonexistent", "verify", target)
        assert (result.code, result.out) == (0, summary("hello_ok", live.root, "SUCCESS") + "\n"), target


def test_a_problem_is_one_line_with_file_record_and_offset_and_exit_1(capsys, live, tmp_path):
    root, runner = fresh_copy(live, tmp_path)
    index = find(runner, is_process("hello", ProcessState.RUNNING))
    total = len(frames(runner))
    offset = flip(runner, index)
    result = thermos(capsys, root, "verify", "hello_ok")
    assert result.code == 1 and result.err == ""
    assert result.out.splitlines() == [
        "%s: record %d at byte %d: corrupt record: undecodable record (TypeError: struct field had wrong "
        "type: expected 12 but got 127); readers stop here; %d whole records follow it, which readers "
        "never see" % (runner, index, offset, total - index - 1),
        "hello_ok: 1 problem (%d runner records, 1 coordinator checkpoint, state ACTIVE before the "
        "damage)" % index]


def test_every_task_is_reported_and_one_bad_one_fails_the_run(capsys, live, tmp_path):
    root, runner = fresh_copy(live, tmp_path)
    copy_task(live.root, "hello_fail", root)
    tasks = os.path.join(root, "tasks")
    os.rename(os.path.join(tasks, "finished", "hello_fail"), os.path.join(tasks, "active", "hello_fail"))
    result = thermos(capsys, root, "verify", "hello_ok", "hello_fail")
    assert result.code == 1
    assert result.out.splitlines() == [
        summary("hello_ok", root, "SUCCESS"),
        "%s: task JSON in tasks/active, but the runner checkpoint says the task is FAILED (it belongs in "
        "tasks/finished)" % os.path.join(root, "tasks", "active", "hello_fail"),
        summary("hello_fail", root, "FAILED", extra="1 problem")]


def test_a_torn_tail_is_a_note_and_exit_0(capsys, live, tmp_path):
    root, runner = fresh_copy(live, tmp_path)
    expected = summary("hello_ok", root, "SUCCESS")
    whole, size = len(frames(runner)), os.path.getsize(runner)
    with open(runner, "ab") as fp:
        fp.write(b"\x00\x00\x00\x30\x0c\x00")  # a frame header and the first bytes of its payload
    result = thermos(capsys, root, "verify", "hello_ok")
    assert result.code == 0
    assert result.out.splitlines() == [
        "%s: record %d at byte %d: note: torn tail: the last frame announces 48 bytes but only 2 follow (an "
        "append cut short; readers ignore it)" % (runner, whole, size),
        expected]


def test_json(capsys, live, tmp_path):
    root, runner = fresh_copy(live, tmp_path)
    copy_task(live.root, "hello_fail", root)
    index = find(runner, is_process("hello", ProcessState.RUNNING))
    offset = flip(runner, index)
    result = thermos(capsys, root, "verify", "--json", "hello_fail", "hello_ok")
    assert result.code == 1
    data = json.loads(result.out)
    assert data["consistent"] is False
    ok, bad = data["tasks"]
    assert ok == {"task_id": "hello_fail", "checkpoint_dir": os.path.join(root, "checkpoints", "hello_fail"),
                  "root": root, "state": "FAILED", "consistent": True, "partial": False,
                  "records": len(frames(os.path.join(root, "checkpoints", "hello_fail", "runner"))),
                  "coordinators": ["coordinator.main"], "problems": [], "notes": []}
    assert (bad["consistent"], bad["partial"], bad["state"], bad["records"]) == (False, True, "ACTIVE", index)
    (problem,) = bad["problems"]
    assert (problem["path"], problem["record"], problem["offset"]) == (runner, index, offset)
    assert problem["message"].startswith("corrupt record: undecodable record")


def test_a_task_is_checked_in_every_root_that_has_it(capsys, live, tmp_path):
    first, _ = fresh_copy(live, tmp_path, name="a")
    second, _ = fresh_copy(live, tmp_path, name="b")
    os.unlink(os.path.join(second, "tasks", "finished", "hello_ok"))
    result = thermos(capsys, first, "--root", second, "verify", "hello_ok")
    assert result.code == 1
    assert result.out.splitlines() == [
        summary("hello_ok", first, "SUCCESS"),
        "%s: task JSON missing: the task is SUCCESS, so it should be here" % os.path.join(
            second, "tasks", "finished", "hello_ok"),
        summary("hello_ok", second, "SUCCESS", extra="1 problem")]


def test_tasks_under_a_mesos_work_dir_are_found(capsys, live, tmp_path):
    work = tmp_path / "mesos"
    run = work / "slaves" / "S0" / "frameworks" / "F0" / "executors" / "E0" / "runs" / "R0" / "checkpoints"
    copy_task(live.root, "hello_ok", str(run))
    capsys.readouterr()
    from thermos.cli.main import main

    code = main(["--root", str(tmp_path / "none"), "--mesos-root", str(work), "verify", "hello_ok"])
    assert (code, capsys.readouterr().out) == (0, summary("hello_ok", str(run), "SUCCESS") + "\n")


def test_bad_arguments_are_one_line_and_exit_2(live):
    result = thermos_proc(live.root, "verify", "no_such_task")
    assert result.code == 2 and result.out == ""
    assert result.err == (
        "thermos verify: error: no_such_task is neither a task in %s nor a checkpoint directory or file "
        "(give a task id, ROOT/checkpoints/TASK_ID or its runner file; 'thermos status' lists the "
        "tasks)\n" % live.root)
    result = thermos_proc(live.root, "verify")
    assert result.code == 2 and result.err == (
        "thermos verify: error: Must specify tasks or checkpoints! (e.g. thermos verify hello_world or "
        "thermos verify /var/run/thermos/checkpoints/hello_world)\n")


def test_the_readme_session(tmp_path):
    """README 'Operating a host': two runs of examples/hello_world.thermos, one damaged, one torn."""
    root = str(tmp_path / "ops")
    for task_id in ("hello_1", "hello_2"):
        result = thermos_proc(root, "run", "--sandbox", os.path.join(root, "sandbox"), "--task_id", task_id,
                              "examples/hello_world.thermos")
        assert result.code == 0, result.err
    runner_1, runner_2 = (os.path.join(root, "checkpoints", t, "runner") for t in ("hello_1", "hello_2"))
    assert len(frames(runner_1)) == 9
    offset = flip(runner_2, 4)
    result = thermos_proc(root, "verify", "hello_1", "hello_2")
    assert result.code == 1 and result.err == ""
    assert result.out.splitlines() == [
        "hello_1: consistent (9 runner records, 1 coordinator checkpoint, state SUCCESS)",
        "%s: record 4 at byte %d: corrupt record: undecodable record (TypeError: struct field had wrong "
        "type: expected 12 but got 127); readers stop here; 4 whole records follow it, which readers never "
        "see" % (runner_2, offset),
        "hello_2: 1 problem (4 runner records, 1 coordinator checkpoint, state ACTIVE before the damage)"]
    size = os.path.getsize(runner_1)
    with open(runner_1, "ab") as fp:
        fp.write(b"\x00\x00\x00\x30\x0c\x00")
    result = thermos_proc(root, "verify", os.path.join(root, "checkpoints", "hello_1"))
    assert result.code == 0
    assert result.out.splitlines() == [
        "%s: record 9 at byte %d: note: torn tail: the last frame announces 48 bytes but only 2 follow (an "
        "append cut short; readers ignore it)" % (runner_1, size),
        "hello_1: consistent (9 runner records, 1 coordinator checkpoint, state SUCCESS)"]
