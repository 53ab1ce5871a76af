"""thermos_executor end to end: the real console script launched by the stand-in Mesos agent, running
real tasks under thermos_runner. Each test asserts the exact sequence of updates the agent received."""

from __future__ import annotations

import os
import re
import shlex
import signal
import stat
import sys
import time

import pytest

from tests.executor.parts.payloads import mesos_job, task_info_data, thermos_task
from tests.harness.executor import (
    alive,
    free_port,
    launch,
    process_pid,
    runner_state,
    task_server_cmd,
)
from tests.harness.mesos import dump_executors
from thermos.gen.thermos.ttypes import TaskState
from thermos.testing.mesos_agent import MesosAgent
from thermos.testing.wait import wait_until

T = 90.0  # bound for every wait (a loaded 2-core machine)


def data_for(*processes, task_id="t1", ports=None, **job):
    return task_info_data(mesos_job(thermos_task(*processes), **job), task_id=task_id, ports=ports)


def messages(agent, task_id="t1"):
    return [u.message for u in agent.task_updates(task_id)]


def finish(agent, run, task_id="t1"):
    """Wait for the terminal update and the executor's exit; check nothing traced back."""
    update = agent.wait_terminal(task_id, T)
    assert agent.wait_exit(run.executor_id, T) == 0, dump_executors(agent)
    assert not any("Traceback" in (m or "") for m in messages(agent, task_id))
    assert agent.violations == []
    return update


def wait_running(agent, run, task_id="t1"):
    agent.wait_for(lambda: "TASK_RUNNING" in agent.states(task_id) or agent.task_state(task_id).endswith(
        ("FAILED", "LOST", "FINISHED", "KILLED")), T, "TASK_RUNNING\n" + dump_executors(agent))
    assert agent.states(task_id) == ["TASK_STARTING", "TASK_RUNNING"], dump_executors(agent)


def test_happy_path(mesos_agent):
    agent = mesos_agent
    run = launch(agent, data_for(("hello", "echo hello world")))
    update = finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert messages(agent) == [None, "No health-check defined, task is assumed healthy.", "Task finished."]
    assert update.source == "SOURCE_EXECUTOR"
    state = runner_state(run, "t1")
    assert state.statuses[-1].state == TaskState.SUCCESS
    assert state.header.sandbox == os.path.join(run.directory, "sandbox")
    with open(os.path.join(run.directory, "sandbox", ".logs", "hello", "0", "stdout")) as fp:
        assert fp.read() == "hello world\n"
    assert os.path.exists(os.path.join(run.sandbox, "thermos_executor.log"))


def test_failed_process_is_named_with_its_return_code(mesos_agent):
    agent = mesos_agent
    run = launch(agent, data_for(("setup", "true"), ("server", "exit 3")))
    update = finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    assert update.message == "Task failed: process 'server' failed with return code 3 (run 1)."


def test_kill(mesos_agent):
    agent = mesos_agent
    run = launch(agent, data_for(("sleeper", "sleep 600")))
    wait_running(agent, run)
    pid = wait_until(lambda: process_pid(run, "t1", "sleeper"), timeout=T)
    agent.kill("t1")
    agent.kill("t1")  # schedulers retry kills
    update = finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert update.message == "Instructed to kill task."
    assert not alive(pid)
    assert runner_state(run, "t1").statuses[-1].state == TaskState.KILLED


def test_shutdown(mesos_agent):
    agent = mesos_agent
    run = launch(agent, data_for(("sleeper", "sleep 600")))
    wait_running(agent, run)
    pid = wait_until(lambda: process_pid(run, "t1", "sleeper"), timeout=T)
    agent.shutdown(run.executor_id)
    update = finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert update.message == "Told to shut down executor." and update.source == "SOURCE_EXECUTOR"
    assert not alive(pid)


def test_bad_task_bytes(mesos_agent):
    agent = mesos_agent
    run = launch(agent, b"garbage")
    finish(agent, run)
    assert agent.states("t1") == ["TASK_FAILED"]
    assert messages(agent) == ["Could not deserialize task."]


def test_bad_config(mesos_agent):
    agent = mesos_agent
    data = task_info_data('{"task": {"name": "x", "processes": 7}, "role": "r", "environment": "e"}')
    run = launch(agent, data)
    update = finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_FAILED"]
    assert update.message.startswith("Could not deserialize Thermos task from AssignedTask: ")
    assert "\n" not in update.message


def test_second_launch_is_lost_for_the_new_task(mesos_agent):
    agent = mesos_agent
    run = launch(agent, data_for(("sleeper", "sleep 600")))
    wait_running(agent, run)
    agent.launch_task(run.executor_id, agent.task_info("t2", data_for(("x", "true"), task_id="t2"),
                                                       executor_id=run.executor_id))
    agent.wait_terminal("t2", T)
    assert agent.states("t2") == ["TASK_LOST"]
    assert messages(agent, "t2") == ["Task already running on this executor: t1"]
    agent.kill("t1")
    finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]


def health_job(tmp_path, *server_args, **check):
    port = free_port()
    events = str(tmp_path / "events")
    config = {"initial_interval_secs": 1.0, "interval_secs": 0.2, "max_consecutive_failures": 0,
              "min_consecutive_successes": 1, "timeout_secs": 1.0}
    config.update(check)
    server = ("server", task_server_cmd("{{thermos.ports[health]}}", events, *server_args))
    return data_for(server, ports={"health": port}, health_check_config=config), events


def test_health_check_pass(mesos_agent, tmp_path):
    agent = mesos_agent
    data, _ = health_job(tmp_path, "--exit-on", "quitquitquit")
    run = launch(agent, data)
    wait_running(agent, run)
    assert messages(agent)[-1] == "Task is healthy."
    agent.kill("t1")
    finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]


def test_health_check_fail(mesos_agent, tmp_path):
    agent = mesos_agent
    data, _ = health_job(tmp_path, "--health", "not ok", initial_interval_secs=0.4)
    run = launch(agent, data)
    update = finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_FAILED"]
    assert update.message.startswith("Failed health check! "), update.message


def test_health_check_snooze(mesos_agent, tmp_path):
    agent = mesos_agent
    port = free_port()
    events = str(tmp_path / "events")
    snooze = ("snooze", "touch .healthchecksnooze")
    server = ("server", task_server_cmd("{{thermos.ports[health]}}", events, "--health", "not ok"))
    job = mesos_job(thermos_task(snooze, server), health_check_config={
        "initial_interval_secs": 1.0, "interval_secs": 0.2, "max_consecutive_failures": 0})
    job["task"]["constraints"] = [{"order": ["snooze", "server"]}]
    run = launch(agent, task_info_data(job, task_id="t1", ports={"health": port}))
    wait_running(agent, run)
    assert messages(agent)[-1] == "Task is healthy."
    agent.kill("t1")
    finish(agent, run)


def test_graceful_endpoints_reached_before_any_signal(mesos_agent, tmp_path):
    agent = mesos_agent
    port = free_port()
    events = str(tmp_path / "events")
    server = ("server", task_server_cmd("{{thermos.ports[health]}}", events, "--ignore-term"))
    job = mesos_job(thermos_task(server), lifecycle={"http": {
        "graceful_shutdown_wait_secs": 1, "shutdown_wait_secs": 1}})
    job["task"]["finalization_wait"] = 2
    run = launch(agent, task_info_data(job, task_id="t1", ports={"health": port}))
    wait_running(agent, run)
    agent.kill("t1")
    finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    with open(events) as fp:
        seen = [line.split()[1] for line in fp]
    assert seen[:4] == ["listening", "quitquitquit", "abortabortabort", "SIGTERM"], seen


def test_task_exiting_on_quitquitquit_is_killed_promptly(mesos_agent, tmp_path):
    agent = mesos_agent
    data, events = health_job(tmp_path, "--exit-on", "quitquitquit")
    run = launch(agent, data)
    wait_running(agent, run)
    agent.kill("t1")
    update = finish(agent, run)
    assert update.state == "TASK_KILLED" and update.message == "Instructed to kill task."
    with open(events) as fp:
        assert [line.split()[1] for line in fp] == ["listening", "quitquitquit"]


def test_agent_restart_while_the_task_runs(agent_factory):
    agent = agent_factory(reregistration_timeout=2.0)
    run = launch(agent, data_for(("sleeper", "sleep 600")))
    wait_running(agent, run)
    pid = wait_until(lambda: process_pid(run, "t1", "sleeper"), timeout=T)
    agent.restart(down_for=3.0)
    agent.wait_for(lambda: len(run.subscribes) == 2 and agent.state == "RUNNING", T,
                   "re-subscription and the end of recovery\n" + dump_executors(agent))
    assert not run.destroyed and alive(pid)
    agent.kill("t1")
    finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]


def test_task_ending_while_the_agent_is_down_is_reported_after_resubscribe(mesos_agent):
    agent = mesos_agent
    run = launch(agent, data_for(("short", "sleep 2")))
    wait_running(agent, run)
    agent.crash()
    wait_until(lambda: "Status update TASK_FINISHED for t1" in run.log_text(), timeout=T)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING"]
    agent.recover()
    update = finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert update.message == "Task finished."


def test_recovery_timeout_ends_executor_and_task(agent_factory):
    agent = agent_factory(recovery_timeout="3secs")
    run = launch(agent, data_for(("sleeper", "sleep 600")))
    wait_running(agent, run)
    pid = wait_until(lambda: process_pid(run, "t1", "sleeper"), timeout=T)
    agent.crash()
    assert agent.wait_exit(run.executor_id, T) == 0, dump_executors(agent)
    assert "recovery timeout" in run.log_text()
    assert not alive(pid)
    assert runner_state(run, "t1").statuses[-1].state == TaskState.KILLED


def test_runner_sigkilled_mid_task_is_restarted(mesos_agent):
    agent = mesos_agent
    run = launch(agent, data_for(("sleeper", "sleep 600")))
    wait_running(agent, run)
    pid = wait_until(lambda: process_pid(run, "t1", "sleeper"), timeout=T)
    first_runner = runner_state(run, "t1").statuses[-1].runner_pid
    os.kill(first_runner, signal.SIGKILL)
    wait_until(lambda: "restarting it" in run.log_text(), timeout=T)
    # The new runner takes the task over: it appends its own ACTIVE record with its pid.
    wait_until(lambda: runner_state(run, "t1").statuses[-1].runner_pid not in (first_runner, None),
               timeout=T)
    assert alive(pid)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING"]
    agent.kill("t1")
    finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert not alive(pid)


def test_runner_dying_three_times_in_a_minute_gives_up_with_lost(mesos_agent):
    agent = mesos_agent
    run = launch(agent, data_for(("sleeper", "sleep 600")))
    wait_running(agent, run)
    pid = wait_until(lambda: process_pid(run, "t1", "sleeper"), timeout=T)
    killed: set[int] = set()
    for _ in range(3):
        runner = wait_until(lambda: (runner_state(run, "t1").statuses[-1].runner_pid
                                     if runner_state(run, "t1").statuses[-1].runner_pid not in killed
                                     else None), timeout=T)
        killed.add(runner)
        os.kill(runner, signal.SIGKILL)
    update = finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_LOST"]
    assert update.message.startswith("thermos_runner died 3 times within 60 seconds"), update.message
    assert not alive(pid)


@pytest.mark.parametrize("flag", ["--bogus", "--stop_timeout_in_secs=soon",
                                  "--disk-collection-interval-secs=0"])
def test_bad_flags_are_one_line(mesos_agent, flag):
    agent = mesos_agent
    run = launch(agent, data_for(("x", "true")), flags=flag)
    assert agent.wait_exit(run.executor_id, T) == 2
    err = run.log_text().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("thermos_executor: error: "), err
    agent.wait_terminal("t1", T)
    assert agent.task_updates("t1")[-1].source == "SOURCE_AGENT"  # the agent fails the task


def test_disk_limit_exceeded(mesos_agent):
    agent = mesos_agent
    task = thermos_task(("writer", "head -c 3000000 /dev/zero > big && sleep 600"),
                        resources={"cpu": 0.1, "ram": 64 * 1024 * 1024, "disk": 1024 * 1024})
    run = launch(agent, task_info_data(mesos_job(task), task_id="t1"),
                 flags="--nosetuid --disk-collection-interval-secs=0.2")
    update = finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    assert update.message.startswith("Disk limit exceeded.  Reserved 1048576 bytes vs used "), update.message
    used = int(update.message.split("used ")[1].split()[0])
    assert used >= 3_000_000
    assert runner_state(run, "t1").statuses[-1].state == TaskState.KILLED


def test_announcer_with_zookeeper_session_expiry_and_withdrawal_before_kill(mesos_agent, zookeeper, tmp_path):
    import json

    from kazoo.client import KazooClient

    agent = mesos_agent
    port = free_port()
    events = str(tmp_path / "events")
    job = mesos_job(thermos_task(("server", task_server_cmd("{{thermos.ports[http]}}", events))),
                    announce={"primary_port": "http"})
    data = task_info_data(job, task_id="t1", ports={"http": port}, instance=3)
    run = launch(agent, data, flags="--nosetuid --announcer-ensemble=%s --announcer-hostname=host7"
                 % zookeeper.connect_string)
    path = "/aurora/www-data/prod/hello"
    observer = KazooClient(hosts=zookeeper.connect_string)
    observer.start(timeout=30)
    try:
        wait_running(agent, run)
        members = wait_until(lambda: observer.exists(path) and observer.get_children(path), timeout=T)
        [first] = members
        record = json.loads(observer.get(path + "/" + first)[0])
        assert record == {"serviceEndpoint": {"host": "host7", "port": port},
                          "additionalEndpoints": {"http": {"host": "host7", "port": port},
                                                  "aurora": {"host": "host7", "port": port}},
                          "status": "ALIVE", "shard": 3}
        # Session expiry: freeze the executor until ZooKeeper expires its session (the member goes).
        os.killpg(run.proc.pid, signal.SIGSTOP)  # the executor's group (its runner has its own session)
        try:
            wait_until(lambda: observer.get_children(path) == [], timeout=T)
        finally:
            os.killpg(run.proc.pid, signal.SIGCONT)
        [second] = wait_until(lambda: observer.get_children(path), timeout=T)
        assert second != first
        # The member is withdrawn before the task is signalled.
        withdrawn: list[float] = []

        def watch(children):
            if children == [] and not withdrawn:
                withdrawn.append(time.monotonic())

        observer.ChildrenWatch(path, watch)
        agent.kill("t1")
        finish(agent, run)
        assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
        wait_until(lambda: withdrawn, timeout=T)
        with open(events) as fp:
            term = [float(line.split()[0]) for line in fp if line.split()[1] == "SIGTERM"]
        assert term and withdrawn[0] < term[0]
    finally:
        observer.stop()
        observer.close()


def test_memory_limit_exceeded_with_enable_memory_limit(mesos_agent):
    agent = mesos_agent
    limit = 32 * 1024 * 1024
    # The task holds ~96 MB of touched memory two seconds after it starts (so RUNNING comes first).
    hog = "sleep 2 && exec %s -c %s" % (shlex.quote(sys.executable), shlex.quote(
        "import time; held = b'x' * (96 << 20); time.sleep(600)"))
    task = thermos_task(("hog", hog), resources={"cpu": 0.1, "ram": limit, "disk": 64 * 1024 * 1024})
    run = launch(agent, task_info_data(mesos_job(task), task_id="t1"),
                 flags="--nosetuid --enable-memory-limit --process-collection-interval-secs=0.2")
    pid = wait_until(lambda: process_pid(run, "t1", "hog"), timeout=T)
    update = finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    match = re.fullmatch(r"Memory limit exceeded\.  Reserved 33554432 bytes vs used (\d+) bytes\.",
                         update.message)
    assert match, update.message
    assert int(match.group(1)) > limit
    assert not alive(pid)
    assert runner_state(run, "t1").statuses[-1].state == TaskState.KILLED


@pytest.fixture
def open_agent(traversable_dir):
    """An agent whose work_dir every user can traverse, as a real agent's is."""
    agent = MesosAgent(os.path.join(traversable_dir, "mesos"))
    agent.start()
    yield agent
    agent.stop()


@pytest.mark.root
def test_task_runs_as_its_role_user_with_setuid(open_agent, role_user):
    agent = open_agent
    name = role_user.pw_name
    job = mesos_job(thermos_task(("whoami", "id -un && id -u && touch made-by-task")), role=name)
    run = launch(agent, task_info_data(job, task_id="t1", role=name), flags="")  # no --nosetuid
    update = finish(agent, run)
    assert agent.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert update.message == "Task finished."
    sandbox = os.path.join(run.directory, "sandbox")
    st = os.stat(sandbox)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (role_user.pw_uid, role_user.pw_gid, 0o700)
    assert os.stat(os.path.join(sandbox, "made-by-task")).st_uid == role_user.pw_uid
    logs = os.path.join(sandbox, ".logs", "whoami", "0")
    for path in (logs, os.path.join(logs, "stdout"), os.path.join(logs, "stderr")):
        assert os.stat(path).st_uid == role_user.pw_uid, path
    with open(os.path.join(logs, "stdout")) as fp:
        assert fp.read() == "%s\n%d\n" % (name, role_user.pw_uid)
    assert runner_state(run, "t1").header.user == name
