"""TaskRunner behaviours of spec §12, each through a real thermos_runner subprocess."""

import os

from thermos.core import containment
from thermos.core.containment import MARKER_ENV
from thermos.gen.thermos.ttypes import TaskState

from .runner_util import S, proc, run_task, states, task


def test_hello_world_and_header(tmp_path):
    result = run_task(tmp_path, task(proc("hello", "echo hello world")), portmap={})
    assert result.task_state == TaskState.SUCCESS
    assert states(result, "hello") == [S.SUCCESS]
    header = result.reconstructed_state.header
    assert header.task_id == "harness_task"
    assert header.sandbox == os.path.join(str(tmp_path), "sandbox", "harness_task")
    assert header.log_dir == os.path.join(header.sandbox, ".logs")
    assert header.launch_time_ms > 0 and header.hostname
    with open(os.path.join(header.log_dir, "hello", "0", "stdout")) as fp:
        assert fp.read() == "hello world\n"
    statuses = [s.state for s in result.reconstructed_state.statuses]
    assert statuses == [TaskState.ACTIVE, TaskState.CLEANING, TaskState.FINALIZING, TaskState.SUCCESS]
    assert os.path.exists(os.path.join(str(tmp_path), "checkpoints", "tasks", "finished", "harness_task"))
    assert not os.path.exists(os.path.join(str(tmp_path), "checkpoints", "tasks", "active", "harness_task"))


def test_angry(tmp_path):
    t = task(proc("a", "true"), proc("b", "exit 1", max_failures=2), proc("c", "true", final=True),
             order=[["a", "b"]], max_failures=2)
    result = run_task(tmp_path, t)
    assert result.task_state == TaskState.SUCCESS
    assert states(result, "a") == [S.SUCCESS]
    assert states(result, "b") == [S.FAILED, S.FAILED]
    assert states(result, "c") == [S.SUCCESS]
    assert [r.return_code for r in result.runs("b")] == [1, 1]  # kept for FAILED runs


def test_ephemerals(tmp_path):
    t = task(proc("ephemeral_sleepy", "sleep 10", ephemeral=True), proc("sleepy", "sleep 1"))
    result = run_task(tmp_path, t)
    assert result.task_state == TaskState.SUCCESS
    assert states(result, "sleepy") == [S.SUCCESS]
    assert states(result, "ephemeral_sleepy") == [S.KILLED]


def test_failing_runner(tmp_path):
    def flaky(name, succeed_on):
        return proc(name, "n=$(cat %s.n 2>/dev/null || echo 0); n=$((n+1)); echo $n > %s.n; [ $n -ge %d ]"
                    % (name, name, succeed_on), max_failures=5)

    result = run_task(tmp_path, task(flaky("p1", 1), flaky("p2", 2), flaky("p3", 3)))
    assert result.task_state == TaskState.SUCCESS
    for k in (1, 2, 3):
        assert states(result, "p%d" % k) == [S.FAILED] * (k - 1) + [S.SUCCESS]


def test_failure_limit_deadlock(tmp_path):
    t = task(proc("a", "true"), proc("b", "false"), proc("c", "true"), order=[["a", "b", "c"]],
             max_failures=2)
    result = run_task(tmp_path, t)
    assert result.task_state == TaskState.FAILED
    assert states(result, "a") == [S.SUCCESS]
    assert states(result, "b") == [S.FAILED]
    assert "c" not in result.reconstructed_state.processes


def test_unlimited_task_failures(tmp_path):
    procs = [proc("f%d" % i, "false", max_failures=2) for i in range(3)]
    procs += [proc("s%d" % i, "true", max_failures=2) for i in range(3)]
    result = run_task(tmp_path, task(*procs, max_failures=0))
    assert result.task_state == TaskState.SUCCESS
    for i in range(3):
        assert states(result, "f%d" % i) == [S.FAILED, S.FAILED]
        assert states(result, "s%d" % i) == [S.SUCCESS]


def test_finalizer_order_and_failing_finalizer(tmp_path):
    t = task(proc("main", "true"), proc("f1", "exit 1", final=True), proc("f2", "true", final=True),
             order=[["f1", "f2"]])
    result = run_task(tmp_path, t)
    assert result.task_state == TaskState.SUCCESS
    assert states(result, "f1") == [S.FAILED]
    assert "f2" not in result.reconstructed_state.processes


def test_finalizers_run_in_order_after_main(tmp_path):
    t = task(proc("main", "sleep 0.1"), proc("f1", "sleep 0.1", final=True),
             proc("f2", "true", final=True), order=[["f1", "f2"]])
    result = run_task(tmp_path, t)
    main, f1, f2 = (result.runs(n)[0] for n in ("main", "f1", "f2"))
    assert main.stop_time <= f1.start_time and f1.stop_time <= f2.start_time
    assert result.task_state == TaskState.SUCCESS


def test_failing_main_still_runs_finalizer(tmp_path):
    result = run_task(tmp_path, task(proc("main", "false"), proc("fin", "true", final=True)))
    assert result.task_state == TaskState.FAILED
    assert states(result, "fin") == [S.SUCCESS]


def test_diamond_with_port_and_times(tmp_path):
    names = ["a", "b1", "b2", "c1", "c2", "d"]
    t = task(*[proc(n, "echo {{thermos.ports[named_port]}} > %s.port" % n) for n in names],
             order=[["a", "b1", "c1", "d"], ["a", "b2", "c2", "d"]])
    result = run_task(tmp_path, t, portmap={"named_port": 8123})
    assert result.task_state == TaskState.SUCCESS
    assert result.reconstructed_state.header.ports == {"named_port": 8123}
    for n in names:
        runs = result.runs(n)
        assert [r.state for r in runs] == [S.SUCCESS]
        assert runs[0].fork_time < runs[0].start_time < runs[0].stop_time
    with open(os.path.join(result.reconstructed_state.header.sandbox, "d.port")) as fp:
        assert fp.read() == "8123\n"


def test_max_concurrency_one(tmp_path):
    t = task(*[proc("p%d" % i, "sleep 0.3") for i in range(3)], max_concurrency=1)
    result = run_task(tmp_path, t)
    runs = sorted((result.runs("p%d" % i)[0] for i in range(3)), key=lambda r: r.start_time)
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later.start_time >= earlier.stop_time


def test_thermos_profile_is_sourced(tmp_path):
    t = task(proc("setup", "mkdir -p .profile.d && echo 'export FOO=1' > .profile.d/a.sh && "
                           "echo 'export BAR=2' > .profile.d/b.sh && "
                           "echo 'for f in $HOME/.profile.d/*.sh; do . $f; done' > .thermos_profile"),
             proc("use", "echo $FOO $BAR > out"), order=[["setup", "use"]])
    result = run_task(tmp_path, t)
    with open(os.path.join(result.reconstructed_state.header.sandbox, "out")) as fp:
        assert fp.read() == "1 2\n"


def test_minimal_environment(tmp_path):
    t = task(proc("env", "env > env.txt"))
    result = run_task(tmp_path, t)
    with open(os.path.join(result.reconstructed_state.header.sandbox, "env.txt")) as fp:
        keys = {line.split("=", 1)[0] for line in fp.read().splitlines()}
    assert {"HOME", "USER", "LOGNAME", "PATH"} <= keys
    assert not any(k.startswith("THERMOS") for k in keys - {MARKER_ENV})
    # the containment marker is there only where no cgroup holds the task
    has_cgroup = os.geteuid() == 0 and containment.TaskCgroup.for_task("/x", "y") is not None
    assert (MARKER_ENV in keys) == (not has_cgroup)


def test_thermos_runner_caps_a_process_at_100_runs(tmp_path):
    """max_failures=0 retries forever in Aurora's TaskPlanner; thermos_runner caps it at 100 runs."""
    result = run_task(tmp_path, task(proc("forever", "false", max_failures=0)))
    assert states(result, "forever") == [S.FAILED] * 100
    assert result.task_state == TaskState.FAILED
