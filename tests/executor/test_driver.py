"""The driver layer (executor/driver.py) against the stand-in agent, through a real executor process.

Each test starts tests/harness/echo_executor.py as the agent would, so pymesos runs on its own IO
thread over real sockets; the assertions are what the agent (and so a scheduler) sees.
"""

from __future__ import annotations

import base64
import json
import os

import pytest
from thermos.executor.driver import MesosEnvironment, parse_duration

from tests.harness.mesos import ECHO_EXECUTOR, dump_executors, python_command

T = 60.0  # bound for every wait; the machine may be loaded


def start_echo(agent, task_id="t1", executor_id="e1", **kwargs):
    run = agent.launch_executor(executor_id, python_command(ECHO_EXECUTOR), **kwargs)
    agent.launch_task(executor_id, agent.task_info(task_id, b"payload", executor_id=executor_id))
    agent.wait_for(lambda: agent.states(task_id) == ["TASK_RUNNING"], T,
                   "TASK_RUNNING\n" + dump_executors(agent))
    return run


def test_parse_duration_and_environment():
    assert parse_duration("2secs") == 2.0
    assert parse_duration("15mins") == 900.0
    assert parse_duration("500ms") == 0.5
    with pytest.raises(ValueError, match="not a Mesos duration"):
        parse_duration("2 fortnights")
    env = MesosEnvironment.from_env({"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "f",
                                     "MESOS_EXECUTOR_ID": "e", "MESOS_CHECKPOINT": "0",
                                     "MESOS_DIRECTORY": "/run/d", "MESOS_RECOVERY_TIMEOUT": "3secs"})
    assert env.checkpoint is False  # pymesos read "0" as on
    assert env.sandbox == "/run/d" and env.recovery_timeout == 3.0
    with pytest.raises(MesosEnvironment.Error, match="MESOS_AGENT_ENDPOINT not set"):
        MesosEnvironment.from_env({"MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e"})
    with pytest.raises(MesosEnvironment.Error, match="MESOS_RECOVERY_TIMEOUT"):
        MesosEnvironment.from_env({"MESOS_AGENT_ENDPOINT": "h:1", "MESOS_FRAMEWORK_ID": "f",
                                   "MESOS_EXECUTOR_ID": "e", "MESOS_RECOVERY_TIMEOUT": "soon"})


def test_happy_path_wire_format_messages_and_exit(mesos_agent):
    agent = mesos_agent
    run = start_echo(agent)
    sub = run.subscribes[0]
    assert sub["headers"]["content-type"] == "application/json"
    assert sub["headers"]["accept"] == "application/json"
    assert sub["subscribe"] == {"unacknowledged_tasks": [], "unacknowledged_updates": []}
    # Messages both ways, base64 round trip.
    agent.message("e1", b"hello \x00\xff")
    agent.wait_for(lambda: run.messages, T, "the echo")
    assert run.messages == [b"echo:hello \x00\xff"]
    agent.message("e1", b"finish t1")
    assert agent.wait_exit("e1", T) == 0, dump_executors(agent)
    assert agent.states("t1") == ["TASK_RUNNING", "TASK_FINISHED"]
    running = agent.task_updates("t1")[0].status
    assert running["source"] == "SOURCE_EXECUTOR" and len(base64.b64decode(running["uuid"])) == 16
    assert agent.violations == [] and agent.duplicates == 0
    assert os.path.exists(os.path.join(run.meta_dir, "executor.sentinel"))
    assert os.path.exists(os.path.join(run.meta_dir, "http.marker"))
    assert os.path.islink(os.path.join(os.path.dirname(run.directory), "latest"))


def test_kill_and_callback_exception_is_not_fatal(mesos_agent):
    agent = mesos_agent
    start_echo(agent)
    agent.message("e1", b"raise")
    agent.message("e1", b"still there?")
    run = agent.executors["e1"]
    agent.wait_for(lambda: run.messages, T, "an echo after the failing callback")
    agent.kill("t1")
    assert agent.wait_exit("e1", T) == 0, dump_executors(agent)
    assert agent.states("t1") == ["TASK_RUNNING", "TASK_KILLED"]
    assert "Executor callback frameworkMessage raised; ignored" in run.log_text()


def test_shutdown_sends_terminal_updates_before_exit(mesos_agent):
    agent = mesos_agent
    start_echo(agent)
    agent.shutdown("e1")
    assert agent.wait_exit("e1", T) == 0, dump_executors(agent)
    assert agent.states("t1") == ["TASK_RUNNING", "TASK_KILLED"]
    assert all(u.source == "SOURCE_EXECUTOR" for u in agent.updates)


@pytest.mark.parametrize("framing", ["split", "coalesce"])
def test_framing_large_events_heartbeats_and_unknown_events(agent_factory, framing):
    agent = agent_factory(framing=framing)
    run = start_echo(agent)
    agent.heartbeat("e1")
    agent.send_raw("e1", {"type": "SOMETHING_NEW", "something_new": {}})
    big = b"x" * 270_000
    agent.message("e1", big)
    agent.wait_for(lambda: run.messages, T, "the echo of a 270 KB message")
    assert run.messages == [b"echo:" + big]
    agent.message("e1", b"finish t1")
    assert agent.wait_exit("e1", T) == 0, dump_executors(agent)


def test_restart_resubscribes_in_window_and_resends_unacknowledged(agent_factory):
    agent = agent_factory(reregistration_timeout=2.0)
    agent.ack_mode = "manual"  # TASK_RUNNING stays un-acknowledged across the restart
    run = agent.launch_executor("e1", python_command(ECHO_EXECUTOR))
    agent.launch_task("e1", agent.task_info("t1", b"", executor_id="e1"))
    agent.wait_for(lambda: agent.states("t1") == ["TASK_RUNNING"], T, "RUNNING\n" + dump_executors(agent))
    agent.restart(down_for=4.0)
    agent.ack_mode = "auto"
    agent.wait_for(lambda: len(run.subscribes) == 2, T, "a re-subscribe\n" + dump_executors(agent))
    again = run.subscribes[1]["subscribe"]
    assert [u["status"]["state"] for u in again["unacknowledged_updates"]] == ["TASK_RUNNING"]
    assert [t["task_id"]["value"] for t in again["unacknowledged_tasks"]] == ["t1"]
    agent.wait_for(lambda: agent.state == "RUNNING", T, "the end of recovery")
    assert not run.destroyed and run.exit_code is None, "executor missed the re-registration window"
    assert agent.duplicates == 1  # the re-sent RUNNING, de-duplicated by uuid
    assert "Re-registered with agent" in run.log_text()
    agent.message("e1", b"finish t1")
    assert agent.wait_exit("e1", T) == 0, dump_executors(agent)
    assert agent.states("t1") == ["TASK_RUNNING", "TASK_FINISHED"]
    assert agent.violations == []


def test_update_sent_while_agent_down_is_delivered_after_resubscribe(mesos_agent):
    agent = mesos_agent
    run = start_echo(agent)
    agent.message("e1", b"finish-later t1 1.0")
    agent.wait_for(lambda: agent.calls, T)
    agent.crash()
    # The executor logs the terminal update while the agent is away.
    wait = agent.wait_for
    wait(lambda: "Status update TASK_FINISHED for t1" in run.log_text(), T, "the update while down")
    agent.recover()
    assert agent.wait_exit("e1", T) == 0, dump_executors(agent)
    assert agent.states("t1") == ["TASK_RUNNING", "TASK_FINISHED"]
    assert agent.task_updates("t1")[-1].source == "SOURCE_EXECUTOR"


def test_recovery_timeout_ends_the_executor(agent_factory):
    agent = agent_factory(recovery_timeout="3secs")
    run = start_echo(agent)
    agent.crash()
    assert agent.wait_exit("e1", T) == 0, dump_executors(agent)
    assert "did not come back within the recovery timeout (3s)" in run.log_text()


def test_checkpoint_off_exits_on_disconnect(agent_factory):
    agent = agent_factory(checkpoint=False)
    run = start_echo(agent)
    agent.disconnect("e1")
    assert agent.wait_exit("e1", T) == 0, dump_executors(agent)
    assert "checkpointing is off" in run.log_text()


def test_503_during_recovery_is_retried_with_backoff_not_in_a_busy_loop(agent_factory):
    agent = agent_factory(reregistration_timeout=4.0)
    run = start_echo(agent)
    agent.crash()
    agent.recover(recover="cleanup")  # answers 503 to everything, then destroys old executors
    agent.wait_terminal("t1", T)
    assert run.destroyed
    refused = [c for c in agent.calls if c["code"] == 503]
    assert 1 <= len(refused) <= 40, len(refused)  # pymesos alone: hundreds per second
    assert agent.states("t1") == ["TASK_RUNNING", "TASK_LOST"]
    assert agent.task_updates("t1")[-1].reason == "REASON_EXECUTOR_REREGISTRATION_TIMEOUT"


def test_agent_validation_codes(mesos_agent):
    import http.client

    agent = mesos_agent
    start_echo(agent)

    def call(body, headers=None, method="POST"):
        conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
        hdrs = {"Content-Type": "application/json"} if headers is None else headers
        conn.request(method, "/api/v1/executor", body=json.dumps(body) if body is not None else None,
                     headers=hdrs)
        code = conn.getresponse().status
        conn.close()
        return code

    ids = {"framework_id": {"value": agent.framework_id}, "executor_id": {"value": "e1"}}
    good = dict(type="UPDATE", update={"status": {"task_id": {"value": "t1"}, "state": "TASK_RUNNING",
                                                  "source": "SOURCE_EXECUTOR",
                                                  "uuid": base64.b64encode(b"x" * 16).decode()}}, **ids)
    assert call(good) == 202
    assert call(good, headers={}) == 400
    assert call(good, headers={"Content-Type": "text/plain"}) == 415
    assert call(None, method="GET") == 405
    assert call({"type": "HEARTBEAT"}) == 202
    assert call({"type": "UNKNOWN", **ids}) == 501
    bad_uuid = json.loads(json.dumps(good))
    bad_uuid["update"]["status"]["uuid"] = base64.b64encode(b"short").decode()
    assert call(bad_uuid) == 400
    staging = json.loads(json.dumps(good))
    staging["update"]["status"]["state"] = "TASK_STAGING"
    assert call(staging) == 400
    assert call(dict(good, executor_id={"value": "nobody"})) == 400
    assert call({"type": "SUBSCRIBE", **ids}) == 400
