"""Every command's output and exit code on hand-built checkpoint roots."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.cli.helpers import REPO, thermos, thermos_cmd, thermos_proc
from tests.monitoring.fixtures import make_task
from thermos.common.recordio import HEADER
from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt, TaskState
from thermos.testing import ckpt as synth


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / "root")
    make_task(root, "hello_active", state="active", ports={"http": 8080})
    make_task(root, "hello_done", state="finished", runs=2)
    make_task(root, "other_done", state="finished", processes=1)
    return root


def corrupt(root, task_id="broken"):
    make_task(root, task_id, state="finished")
    path = os.path.join(root, "checkpoints", task_id, "runner")
    with open(path, "r+b") as fp:
        fp.seek(60)
        fp.write(HEADER.pack(5) + b"\xff" * 5)
    return path


# ---- usage and help -------------------------------------------------------------------------


def test_usage_lists_every_command_in_aurora_format(capsys, root):
    result = thermos(capsys, root, "help")
    assert result.code == 0
    assert result.out.startswith("thermos\n\ncommands:\n")
    lines = result.out.splitlines()
    for name, summary in (("gc", "Garbage collect task(s) and task metadata."),
                          ("read", "Replay a thermos checkpoint."),
                          ("status", "Get the status of task(s)."),
                          ("tail", "Tail the logs of a task process.")):
        assert "    %-10s\t%s" % (name, summary) in lines


def test_no_command_prints_usage_and_fails(capsys, root):
    result = thermos(capsys, root)
    assert result.code == 1 and "commands:" in result.err


def test_help_for_a_command_and_an_unknown_one(capsys, root):
    result = thermos(capsys, root, "help", "status")
    assert result.code == 0 and result.out.startswith("command status:\nGet the status of task(s).")
    assert "--only" in result.out
    result = thermos(capsys, root, "help", "nope")
    assert result.code == 1 and result.err.startswith("unknown command: nope")


def test_unknown_command_is_one_line(root):
    result = thermos_proc(root, "frobnicate")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "invalid choice: 'frobnicate'" in result.err


# ---- status ---------------------------------------------------------------------------------


def test_status_lists_active_then_finished(capsys, root):
    result = thermos(capsys, root, "status")
    owner = "%8s" % __import__("pwd").getpwuid(os.getuid()).pw_name
    assert result.code == 0
    assert result.out == (
        "Active tasks:\n"
        "  hello_active         [owner: %s]\n\n"
        "Finished tasks:\n"
        "  hello_done           [owner: %s]\n"
        "  other_done           [owner: %s]\n\n" % (owner, owner, owner))


def test_status_verbosity_levels(capsys, root):
    v1 = thermos(capsys, root, "status", "-v", "hello").out.splitlines()
    assert re.fullmatch(r"  hello_active +\[owner: +\w+\]  state:   ACTIVE start: .{25}", v1[1])
    assert re.fullmatch(r"  hello_done +\[owner: +\w+\]  state:  SUCCESS start: .{25}", v1[4])
    v2 = thermos(capsys, root, "status", "--verbosity", "2", "hello_active").out.splitlines()
    assert v2[2] == "    user: %s ports: http -> 8080" % __import__("pwd").getpwuid(os.getuid()).pw_name
    assert v2[3].startswith("    sandbox: ") and v2[3].endswith("sandboxes/hello_active")
    v3 = thermos(capsys, root, "status", "-vvv", "hello_done").out
    assert "    process table:\n" in v3
    assert re.search(r"      - process_0 runs: 2 last: pid=\d+, rc=0, finish:.+, state:SUCCESS\n", v3)


def test_status_only_and_regexes(capsys, root):
    assert "Finished" not in thermos(capsys, root, "status", "--only", "active").out
    out = thermos(capsys, root, "status", "--only", "finished", "other").out
    assert "other_done" in out and "hello" not in out


def test_status_nothing_found(capsys, root):
    result = thermos(capsys, root, "status", "nomatch")
    assert (result.code, result.out) == (1, "No tasks found.\n")


def test_status_bad_regex_is_one_line(capsys, root):
    result = thermos(capsys, root, "status", "(")
    assert result.code == 1 and result.out == ""
    assert result.err.count("\n") == 1 and "bad task regex '('" in result.err


def test_status_bad_only_is_one_line(root):
    result = thermos_proc(root, "status", "--only", "zombie")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_status_json(capsys, root):
    result = thermos(capsys, root, "status", "--json")
    data = json.loads(result.out)
    tasks = {task["task_id"]: task for task in data["tasks"]}
    assert tasks["hello_active"]["where"] == "active" and tasks["hello_active"]["state"] == "ACTIVE"
    assert tasks["hello_active"]["header"]["ports"] == {"http": 8080}
    assert tasks["hello_done"]["processes"]["process_0"]["runs"] == 2
    assert tasks["hello_done"]["processes"]["process_0"]["last"]["state"] == "SUCCESS"
    assert result.code == 0


def test_status_on_a_corrupt_checkpoint_marks_it_and_fails(capsys, root):
    path = corrupt(root)
    result = thermos(capsys, root, "status", "-v")
    assert "  broken               [owner: " in result.out
    assert "] - checkpoint stream CORRUPT or outdated format\n" in result.out
    assert "hello_done" in result.out  # the others are still listed
    assert result.code == 1 and result.err.count("\n") == 1 and path in result.err


# ---- read -----------------------------------------------------------------------------------


def test_read_replays_a_checkpoint(capsys, root):
    result = thermos(capsys, root, "read", os.path.join(root, "checkpoints", "hello_active", "runner"))
    lines = result.out.splitlines()
    assert result.code == 0
    assert lines[:3] == ["Recovered Task Header:", "  id:      hello_active",
                         "  user:    %s" % __import__("pwd").getpwuid(os.getuid()).pw_name]
    assert "  ports:   http->8080" in lines
    assert re.fullmatch(r"  \w{3} \w{3} +\d+ [\d:]{8} \d{4} \[pid: 4242\] => ACTIVE", lines[lines.index(
        "Recovered Task States:") + 1])
    assert "  process_0   runs: 1" in lines
    assert "     0: pid=20001, rc=, finish:None, state:RUNNING" in lines


def test_read_lists_runs_newest_first_with_failed_return_codes(capsys, root):
    out = thermos(capsys, root, "read", os.path.join(root, "checkpoints", "hello_done", "runner")).out
    first, second = out.index("     1: pid=20002, rc=0"), out.index("     0: pid=20001, rc=1,")
    assert first < second and "state:FAILED" in out


def test_read_simple_and_json(capsys, root):
    path = os.path.join(root, "checkpoints", "other_done", "runner")
    simple = thermos(capsys, root, "read", "--simple", path).out.splitlines()
    assert simple[0].startswith("CKPT: RunnerCkpt(runner_header=None, process_status=None, "
                                "task_status=TaskStatus(state=0,")
    assert len(simple) == 2 + 4 + 3
    data = json.loads(thermos(capsys, root, "read", "--json", path).out)
    assert data["header"]["task_id"] == "other_done"
    assert [s["state"] for s in data["statuses"]] == ["ACTIVE", "CLEANING", "FINALIZING", "SUCCESS"]
    assert data["processes"]["process_0"][0]["state"] == "SUCCESS"
    records = json.loads(thermos(capsys, root, "read", "--simple", "--json", path).out)
    assert records[0] == {"task_status": {"state": "ACTIVE", "timestamp_ms": 1_700_000_000_000,
                                          "runner_pid": 4242, "runner_uid": 0}}


@pytest.mark.parametrize("args, message", [
    ((), "Expected one checkpoint file, got 0"),
    (("/nonexistent/runner",), "Could not find /nonexistent/runner"),
])
def test_read_bad_arguments(capsys, root, args, message):
    result = thermos(capsys, root, "read", *args)
    assert result.code == 1 and result.err.count("\n") == 1 and message in result.err


def test_read_corrupt_checkpoint_is_one_line(capsys, root):
    path = corrupt(root)
    result = thermos(capsys, root, "read", path)
    assert result.code == 1 and result.out == ""
    assert result.err.count("\n") == 1 and result.err.startswith(
        "thermos read: error: Failed to recover from %s: " % path)
    assert "at byte 41 " in result.err  # the damaged record starts after the 41-byte first one
    simple = thermos(capsys, root, "read", "--simple", path)
    assert simple.code == 1 and simple.out.count("CKPT:") == 1  # the records before the damage


def test_read_without_header_says_so(capsys, tmp_path):
    path = str(tmp_path / "runner")
    synth.write_stream(path, [synth.task_status(TaskState.ACTIVE)])
    result = thermos(capsys, str(tmp_path), "read", path)
    assert result.code == 1 and "Checkpoint stream CORRUPT or outdated format" in result.err


# ---- tail -----------------------------------------------------------------------------------


def test_tail_of_a_terminal_log(capsys, root):
    log_dir = os.path.join(root, "sandboxes", "other_done", ".logs", "process_0", "0")
    with open(os.path.join(log_dir, "stdout"), "w") as fp:
        fp.writelines("line %d\n" % i for i in range(25))
    result = thermos(capsys, root, "tail", "other_done")
    assert result.code == 0
    assert result.out.splitlines() == ["Tail of terminal log %s" % os.path.join(log_dir, "stdout")] + [
        "line %d" % i for i in range(15, 25)]
    assert thermos(capsys, root, "tail", "--stderr", "other_done").out.splitlines() == [
        "Tail of terminal log %s" % os.path.join(log_dir, "stderr")]


def test_tail_picks_the_newest_run(capsys, root):
    out = thermos(capsys, root, "tail", "hello_done", "process_1").out
    assert out.splitlines()[0].endswith("process_1/1/stdout") and "process_1 run 1 line 2" in out


@pytest.mark.parametrize("args, message", [
    ((), "Expected a task to tail"),
    (("nope",), "Could not find task"),
    (("hello_done",), "More than one process matches query; name one of: process_0, process_1"),
    (("hello_done", "nope"), "No processes found"),
    (("a", "b", "c"), "Expected at most two arguments"),
])
def test_tail_bad_input(capsys, root, args, message):
    result = thermos(capsys, root, "tail", *args)
    assert result.code == 1 and result.err.count("\n") == 1 and message in result.err


def test_tail_follows_an_active_log_until_the_run_ends(tmp_path):
    root = str(tmp_path)
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        sandbox = str(tmp_path / "sandbox")
        log_dir = os.path.join(sandbox, ".logs")
        ckpt = os.path.join(root, "checkpoints", "live", "runner")
        run = synth.process_run("p", first_seq=0, pid=sleeper.pid - 1)
        run[2] = RunnerCkpt(process_status=ProcessStatus(
            seq=2, process="p", state=ProcessState.RUNNING, start_time=time.time(), pid=sleeper.pid))
        synth.write_stream(ckpt, [synth.task_status(TaskState.ACTIVE),
                                  synth.header(task_id="live", sandbox=sandbox, log_dir=log_dir)] + run[:3])
        os.makedirs(os.path.join(root, "tasks", "active"))
        open(os.path.join(root, "tasks", "active", "live"), "w").close()
        logfile = os.path.join(log_dir, "p", "0", "stdout")
        os.makedirs(os.path.dirname(logfile))
        with open(logfile, "w") as fp:
            fp.write("before\n")

        tail = subprocess.Popen(thermos_cmd(root, "tail", "live", "--poll-interval", "0.05"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        try:
            assert tail.stdout.readline() == "Tail of active log %s\n" % logfile
            assert tail.stdout.readline() == "before\n"
            with open(logfile, "a") as fp:
                fp.write("during\n")
            assert tail.stdout.readline() == "during\n"  # followed, not just printed once
            with open(logfile, "a") as fp:
                fp.write("last words\n")
            synth.write_stream(ckpt, [RunnerCkpt(process_status=ProcessStatus(
                seq=3, process="p", state=ProcessState.SUCCESS, stop_time=time.time(), return_code=0))])
            out, err = tail.communicate(timeout=30)
        finally:
            if tail.poll() is None:
                tail.kill()
        assert tail.returncode == 0 and out == "last words\n" and err == ""
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait(10)


# ---- kill -----------------------------------------------------------------------------------


def test_kill_needs_tasks_and_a_match(capsys, root):
    result = thermos(capsys, root, "kill")
    assert result.code == 1 and "Must specify tasks!" in result.err and result.err.count("\n") == 1
    result = thermos(capsys, root, "kill", "hello_done")  # finished: not active
    assert result.code == 1 and "No active tasks matched 'hello_done'" in result.err
    assert thermos(capsys, root, "kill", "[").code == 1


# ---- gc -------------------------------------------------------------------------------------


def test_gc_dryrun_deletes_nothing(capsys, root):
    before = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
    result = thermos(capsys, root, "gc", "--dryrun", "--max_tasks", "0", "--delete-logs")
    lines = result.out.splitlines()
    assert result.code == 0
    assert lines[:2] == ["Analyzing root at %s" % root, "No task ids specified, using default collector."]
    assert "  Task hello_done data (deleting) logs (deleting) metadata (keeping) " in lines
    assert lines.count("    would run erase_data()") == 2 and lines.count("    would run erase_logs()") == 2
    assert "erase_metadata" not in result.out
    assert "hello_active" not in result.out  # active tasks are never collected
    assert sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs) == before


def test_gc_with_regex_and_force_deletes_the_data(capsys, root):
    result = thermos(capsys, root, "gc", "--force", "--delete-metadata", "other.*", "hello_active")
    assert result.code == 0
    assert "  Task other_done data (deleting) logs (keeping) metadata (deleting) " in result.out
    assert "hello_active" not in result.out
    assert not os.path.exists(os.path.join(root, "sandboxes", "other_done", "data.bin"))
    assert os.path.exists(os.path.join(root, "sandboxes", "other_done", ".logs"))
    assert not os.path.exists(os.path.join(root, "checkpoints", "other_done"))
    assert "other_done" not in thermos(capsys, root, "status").out


def test_gc_prompt_can_be_declined(root):
    result = thermos_proc(root, "gc", "--max_tasks", "0", stdin="n\n")
    assert result.code == 1 and "Continue [y/N]? Cancelling gc." in result.out
    assert os.path.exists(os.path.join(root, "tasks", "finished", "hello_done"))
    result = thermos_proc(root, "gc", "--max_tasks", "0", stdin="y\n")
    assert result.code == 0 and "Running gc..." in result.out and result.out.count("done.") == 2


def test_gc_nothing_to_do(capsys, root):
    result = thermos(capsys, root, "gc", "--max_age", "3650d")
    assert result.code == 0 and result.out.splitlines()[-1] == "No tasks to garbage collect.  Exiting"


@pytest.mark.parametrize("args, message", [
    (("--max_age", "2x"), "bad --max_age '2x': expected a duration like 2d5h"),
    (("--max_space", "lots"), "bad --max_space 'lots': expected a size like 20G"),
    (("--max_tasks", "-3"), "bad --max_tasks '-3'"),
])
def test_gc_bad_limits_are_one_line(capsys, root, args, message):
    result = thermos(capsys, root, "gc", "--dryrun", *args)
    assert result.code == 1 and result.err.count("\n") == 1 and message in result.err


def test_gc_parsers():
    from thermos.cli.commands.gc import parse_data, parse_time

    assert parse_time("2d5h") == 2 * 86400 + 5 * 3600
    assert parse_time("7200s") == parse_time("7200") == parse_time("2h") == 7200
    assert parse_data("20G") == 20 << 30 and parse_data("100KB") == 100 << 10 and parse_data("7") == 7
    assert parse_data("1.5m") == 3 << 19


# ---- roots ----------------------------------------------------------------------------------


def test_several_roots_and_mesos_roots_are_searched(capsys, tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    make_task(a, "in_a", state="finished")
    make_task(b, "in_b", state="finished")
    run = tmp_path / "mesos" / "slaves" / "S0" / "frameworks" / "F0" / "executors" / "E0" / "runs" / "C0"
    make_task(str(run / "checkpoints"), "in_mesos", state="active")
    os.symlink("C0", run.parent / "latest")
    capsys.readouterr()
    from thermos.cli.main import main

    code = main(["--root", a, "--root", b, "--mesos-root", str(tmp_path / "mesos"), "status"])
    out = capsys.readouterr().out
    assert code == 0 and out.count("in_mesos") == 1 and "in_a" in out and "in_b" in out
    code = main(["status", "--root", a, "--mesos-root", ""])  # global options after the command too
    assert code == 0 and "in_a" in capsys.readouterr().out


def test_no_traceback_reaches_the_user_on_a_corrupt_root(root):
    path = corrupt(root)
    for args in (("status", "-vvv"), ("read", path), ("tail", "broken"),
                 ("gc", "--dryrun", "--max_space", "0"), ("kill", "broken")):
        result = thermos_proc(root, *args)
        assert "Traceback" not in result.err, args


def test_gc_regex_matching_nothing_is_one_line_on_stderr(capsys, root):
    result = thermos(capsys, root, "gc", "--dryrun", "nosuch")
    assert result.code == 1 and result.err.count("\n") == 1
    assert result.err.startswith("thermos gc: error: No finished tasks matched 'nosuch' in %s" % root)
    result = thermos(capsys, root, "gc", "--dryrun", "hello_active")  # active only: never collected
    assert result.code == 1 and "gc never collects active tasks" in result.err


def test_gc_prompt_lists_the_tasks_it_would_delete(root):
    result = thermos_proc(root, "gc", "--max_tasks", "0", stdin="n\n")
    listing = result.out.split("Would garbage collect 2 tasks:\n", 1)[1].split("Continue", 1)[0]
    assert sorted(listing.splitlines()) == ["  hello_done  (%s)" % root, "  other_done  (%s)" % root]
