"""Health probes against real servers and real processes on 127.0.0.1, and the threaded checker."""

import os
import pwd
import socket

import pytest
from thermos.executor.checkers.base import TASK_FAILED, TASK_RUNNING, TASK_STARTING
from thermos.executor.checkers.health import (
    HealthChecker,
    HealthCheckerProvider,
    HealthCheckPolicy,
    HttpProbe,
    NoopHealthChecker,
    ShellProbe,
    TcpProbe,
    task_environment,
)
from thermos.executor.task_info import decode_assigned_task, executor_task_from_assigned_task

from tests.executor.parts.payloads import mesos_job, task_info_data
from tests.executor.parts.servers import RecordingServer, free_port
from thermos.testing.wait import wait_until


@pytest.fixture
def server():
    with RecordingServer({"/health": (200, "OK\n"), "/broken": (500, "ok"), "/busy": (200, "not ok")}) as s:
        yield s


def test_http_probe_passes_on_expected_body_case_insensitively(server):
    assert HttpProbe(server.port, host="127.0.0.1")() == (True, None)
    assert server.requests == [("GET", "/health", b"")]
    assert HttpProbe(server.port, expected_response="OK", host="127.0.0.1")() == (True, None)


def test_http_probe_reports_body_and_code_mismatches(server):
    assert HttpProbe(server.port, "/busy", host="127.0.0.1")() == (
        False, 'Response differs from expected response (expected "ok", got "not ok")')
    # An HTTP error status has an empty body, whatever the server sent.
    assert HttpProbe(server.port, "/broken", host="127.0.0.1")() == (
        False, 'Response differs from expected response (expected "ok", got "")')
    assert HttpProbe(server.port, "/broken", expected_response="", expected_response_code=200,
                     host="127.0.0.1")() == (
        False, "Response code differs from expected response (expected 200, got 500)")
    long = HttpProbe(server.port, "/busy", expected_response="healthy-and-well", host="127.0.0.1")()
    assert long == (False, 'Response differs from expected response (expected "healthy...", got "not ok")')


def test_http_probe_connection_refused():
    port = free_port()
    passed, reason = HttpProbe(port, host="127.0.0.1")()
    assert not passed and reason.startswith("Failed to signal http://127.0.0.1:%d/health: " % port)


def test_http_probe_times_out_on_a_server_that_never_answers():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        passed, reason = HttpProbe(listener.getsockname()[1], timeout_secs=0.2, host="127.0.0.1")()
    assert not passed and "timed out" in reason


def test_tcp_probe():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        assert TcpProbe(listener.getsockname()[1], host="127.0.0.1")() == (True, None)
    port = free_port()
    passed, reason = TcpProbe(port, host="127.0.0.1")()
    assert not passed and reason.startswith("Failed to connect to 127.0.0.1:%d: " % port)


def test_shell_probe_success_and_failure_output(tmp_path):
    assert ShellProbe("test -d .", cwd=str(tmp_path))() == (True, None)
    assert ShellProbe("echo sick; echo worse >&2; exit 3")() == (
        False, "Command 'echo sick; echo worse >&2; exit 3' returned non-zero exit status 3 with output "
               "'sick\nworse\n'")


def test_shell_probe_timeout_kills_what_the_command_started(tmp_path):
    pidfile = tmp_path / "child"
    probe = ShellProbe("sleep 60 & echo $! > %s; wait" % pidfile, timeout_secs=0.5)
    assert probe() == (False, "Health check timed out.")
    child = int(pidfile.read_text())
    wait_until(lambda: not os.path.exists("/proc/%d" % child) or _zombie(child), timeout=10)


def _zombie(pid):
    with open("/proc/%d/stat" % pid) as fp:
        return fp.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_shell_probe_gets_the_task_environment(tmp_path):
    env = task_environment(None, str(tmp_path))
    command = 'test "$HOME" = "%s" && test -n "$USER" && test "$(pwd)" = "%s"' % (tmp_path, tmp_path)
    probe = ShellProbe(command, env=env, cwd=str(tmp_path))
    assert probe() == (True, None)


def test_shell_probe_unknown_user():
    if os.geteuid() != 0:
        pytest.skip("demotion needs root")
    assert ShellProbe("true", user="no-such-user-thermos")() == (
        False, "Health check user 'no-such-user-thermos' does not exist.")


@pytest.mark.root
def test_shell_probe_runs_as_the_role_user(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    nobody = pwd.getpwnam("nobody")
    probe = ShellProbe('test "$(id -u)" = %d' % nobody.pw_uid, user="nobody",
                       env=task_environment("nobody", None))
    assert probe() == (True, None)


def test_threaded_checker_reaches_running_once_the_server_is_healthy(server):
    server.responses["/health"] = (503, "starting")
    policy = HealthCheckPolicy(interval_secs=0.05, initial_interval_secs=5, min_consecutive_successes=2)
    checker = HealthChecker(HttpProbe(server.port, host="127.0.0.1"), policy)
    checker.start()
    try:
        wait_until(lambda: len(server.requests) >= 2, timeout=10)
        assert checker.status.status == TASK_STARTING
        server.responses["/health"] = (200, "ok")
        wait_until(lambda: checker.status.status == TASK_RUNNING, timeout=10)
        assert checker.status.reason == "Task is healthy."
    finally:
        checker.stop()


def test_threaded_checker_fails_and_stops_checking(server):
    policy = HealthCheckPolicy(interval_secs=0.02, initial_interval_secs=0)
    checker = HealthChecker(HttpProbe(server.port, "/busy", host="127.0.0.1"), policy)
    checker.start()
    try:
        wait_until(lambda: checker.status.status == TASK_FAILED, timeout=10)
        assert checker.status.reason == (
            'Failed health check! Response differs from expected response (expected "ok", got "not ok")')
        wait_until(lambda: not checker.checking, timeout=10)  # unhealthy is final: checking ends
        assert checker.metrics()["checks"] == 1
    finally:
        checker.stop()


def decoded(**kw):
    return executor_task_from_assigned_task(decode_assigned_task(task_info_data(**kw)))


def test_provider_builds_the_checker_the_task_asks_for(server, tmp_path):
    provider = HealthCheckerProvider(host="127.0.0.1")
    assert isinstance(provider.from_task(decoded(executor_data=mesos_job()), None), NoopHealthChecker)
    assert NoopHealthChecker().status.reason == "No health-check defined, task is assumed healthy."
    fast = {"initial_interval_secs": 0, "interval_secs": 0.05}
    http = provider.from_task(decoded(executor_data=mesos_job(health_check_config=fast),
                                      ports={"health": server.port}), str(tmp_path))
    assert http.check_once().status == TASK_RUNNING and server.requests[-1][:2] == ("GET", "/health")
    shell = dict(fast, health_checker={"shell": {"shell_command": "test {{thermos.ports[http]}} = 7"}})
    task = decoded(executor_data=mesos_job(health_check_config=shell), ports={"http": 7},
                   role=pwd.getpwuid(os.geteuid()).pw_name)
    checker = HealthCheckerProvider(nosetuid_health_checks=True).from_task(task, str(tmp_path))
    assert checker.check_once().status == TASK_RUNNING
