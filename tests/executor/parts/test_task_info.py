"""Decoding TaskInfo.data: what a scheduler sends becomes a bound, validated Thermos task, and
every bad payload becomes one TASK_FAILED line (spec §1.2, §1.5)."""

import json

import pytest
from thermos.executor.task_info import (
    TaskInfoError,
    decode_assigned_task,
    encode_assigned_task,
    executor_task_from_assigned_task,
    resolve_ports,
)

from tests.executor.parts.payloads import assigned_task, mesos_job, task_info_data, thermos_task
from thermos.gen.aurora.ttypes import Container, DockerContainer

PREFIX = "Could not deserialize Thermos task from AssignedTask: "


def decode(executor_data, **kw):
    return executor_task_from_assigned_task(decode_assigned_task(task_info_data(executor_data, **kw)))


def failure(executor_data, **kw):
    with pytest.raises(TaskInfoError) as info:
        decode(executor_data, **kw)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_mesos_job_is_bound_with_instance_hostname_and_ports():
    task = thermos_task(("web", "serve {{thermos.ports[http]}} {{thermos.ports[alias]}} "
                                "{{mesos.instance}} {{mesos.hostname}} {{thermos.task_id}}"))
    job = mesos_job(task, announce={"primary_port": "http", "portmap": {"alias": "http"}})
    decoded = decode(job, ports={"http": 31000}, instance=3, host="agent7.example", task_id="t-3")
    cmdline = json.loads(decoded.task_json)["processes"][0]["cmdline"]
    # thermos.task_id is left for the runner, which binds it from its --task_id.
    assert cmdline == "serve 31000 31000 3 agent7.example {{thermos.task_id}}"
    assert decoded.ports == {"http": 31000, "alias": 31000}
    assert (decoded.task_id, decoded.instance, decoded.hostname) == ("t-3", 3, "agent7.example")
    assert (decoded.role, decoded.environment, decoded.job_name) == ("www-data", "prod", "hello")
    assert decoded.resources.ram == 16 * 1024 * 1024 and decoded.resources.disk == 8 * 1024 * 1024


def test_default_announce_aliases_aurora_to_the_primary_port():
    decoded = decode(mesos_job(announce={"primary_port": "http"}), ports={"http": 8080})
    assert decoded.ports == {"http": 8080, "aurora": 8080}
    assert decoded.announce.primary_port == "http" and decoded.announce.zk_path is None


def test_legacy_mesos_task_instance_payload():
    legacy = {"task": thermos_task(("hello", "echo {{mesos.instance}}")), "instance": 2, "role": "www-data",
              "environment": "prod"}
    decoded = decode(legacy, instance=2)
    assert json.loads(decoded.task_json)["processes"][0]["cmdline"] == "echo 2"
    assert decoded.instance == 2


def test_unknown_keys_are_ignored():
    job = mesos_job(thermos_task(("hello", "echo hi")), future_field={"x": 1})
    job["task"]["processes"][0]["future_knob"] = True
    assert json.loads(decode(job).task_json)["processes"][0]["cmdline"] == "echo hi"


def test_health_check_defaults_and_noop_without_health_port():
    assert decode(mesos_job()).health_check.kind == "none"
    check = decode(mesos_job(), ports={"health": 31001}).health_check
    assert (check.kind, check.port, check.endpoint) == ("http", 31001, "/health")
    assert check.expected_response == "ok"
    assert (check.initial_interval_secs, check.interval_secs, check.timeout_secs) == (15.0, 10.0, 1.0)
    assert (check.max_consecutive_failures, check.min_consecutive_successes) == (0, 1)


def test_http_health_check_settings_are_carried():
    config = {"health_checker": {"http": {"endpoint": "/ready", "expected_response": "yes",
                                          "expected_response_code": 200}},
              "initial_interval_secs": 1, "interval_secs": 0.5, "max_consecutive_failures": 2,
              "min_consecutive_successes": 3, "timeout_secs": 0.2}
    check = decode(mesos_job(health_check_config=config), ports={"health": 9}).health_check
    assert (check.endpoint, check.expected_response, check.expected_response_code) == ("/ready", "yes", 200)
    assert (check.interval_secs, check.max_consecutive_failures) == (0.5, 2)
    assert check.min_consecutive_successes == 3


def test_shell_health_check_is_interpolated():
    command = "check {{thermos.ports[http]}} {{thermos.task_id}} {{mesos.instance}}"
    config = {"health_checker": {"shell": {"shell_command": command}}}
    check = decode(mesos_job(health_check_config=config), ports={"http": 5, "health": 6}, task_id="t",
                   instance=1).health_check
    assert (check.kind, check.shell_command) == ("shell", "check 5 t 1")


def test_tcp_health_check_needs_its_port():
    config = {"health_checker": {"tcp": {"port": "http"}}}
    assert decode(mesos_job(health_check_config=config), ports={"http": 7}).health_check.port == 7
    assert "tcp health check port 'http'" in failure(mesos_job(health_check_config=config))


def test_http_lifecycle_needs_the_port_and_honours_overrides():
    assert decode(mesos_job()).http_lifecycle is None  # no health port: the runner is stopped directly
    default = decode(mesos_job(), ports={"health": 31337}).http_lifecycle
    assert (default.port, default.graceful_shutdown_endpoint, default.graceful_shutdown_wait_secs,
            default.shutdown_endpoint, default.shutdown_wait_secs) == (
        31337, "/quitquitquit", 5.0, "/abortabortabort", 5.0)
    custom = {"http": {"port": "admin", "graceful_shutdown_endpoint": "/drain",
                       "graceful_shutdown_wait_secs": 1}}
    spec = decode(mesos_job(lifecycle=custom), ports={"admin": 4}).http_lifecycle
    assert (spec.port, spec.graceful_shutdown_endpoint) == (4, "/drain")
    assert spec.graceful_shutdown_wait_secs == 1.0
    assert decode(mesos_job(lifecycle={}), ports={"health": 1}).http_lifecycle is None


def test_docker_container_is_reported():
    container = Container(docker=DockerContainer(image="busybox:latest", parameters=[]))
    decoded = decode(mesos_job(), container=container)
    assert decoded.docker_image == "busybox:latest" and decoded.filesystem_image is None
    assert decode(mesos_job()).docker_image is None


@pytest.mark.parametrize("data", [
    b"garbage", b"", b"\x00", b"\x0b\x00\x01\x00\x00\x00\x02ab",
    task_info_data(mesos_job()) + b"trailing", task_info_data(mesos_job())[:-5],
    b"\x0f\x00\x01\x0c\x7f\xff\xff\xff"])
def test_undecodable_bytes(data):
    with pytest.raises(TaskInfoError) as info:
        decode_assigned_task(data)
    assert str(info.value) == "Could not deserialize task."


def test_encode_round_trips():
    task = assigned_task(mesos_job(), ports={"http": 1})
    assert decode_assigned_task(encode_assigned_task(task)) == task


def test_empty_config():
    assert failure("") == PREFIX + "Task did not have a thermos config!"


def test_invalid_json_config():
    bad_config = PREFIX + "Could not deserialize thermos config: "
    assert failure("{not json").startswith(bad_config + "Expecting property name")
    assert failure("[1, 2]") == bad_config + "expected a JSON object, got list"


def test_missing_required_field():
    job = mesos_job()
    del job["role"]
    assert failure(job) == PREFIX + "Could not deserialize thermos config: 'role' is required but missing"


def test_unbound_template_variable():
    message = failure(mesos_job(thermos_task(("hello", "echo {{version}}"))))
    assert message.startswith(PREFIX) and "{{version}}" in message and "process 'hello'" in message


def test_invalid_task_values():
    assert "process 'a/b'" in failure(mesos_job(thermos_task(("a/b", "echo"))))
    bad = thermos_task(("hello", "echo"))
    bad["processes"][0]["max_failures"] = "lots"
    assert failure(mesos_job(bad)) == (
        PREFIX + "task 'hello': process 'hello': max_failures must be an integer, got 'lots'")
    bad_health = mesos_job(health_check_config={"interval_secs": "often"})
    assert failure(bad_health) == (
        PREFIX + "health_check_config: CoercionError: Cannot coerce 'often' to Float")
    assert failure(mesos_job(announce={"portmap": ["x"]})).startswith(
        PREFIX + "Could not deserialize thermos config")
    cyclic = thermos_task(("a", "echo"), ("b", "echo"))
    cyclic["constraints"] = [{"order": ["a", "b"]}, {"order": ["b", "a"]}]
    assert "cycle" in failure(mesos_job(cyclic)).lower()


def test_port_the_scheduler_did_not_assign():
    message = failure(mesos_job(thermos_task(("web", "serve {{thermos.ports[http]}}"))), ports={"admin": 1})
    assert message.startswith(PREFIX) and "'http'" in message


def test_port_alias_cycle_and_numbers():
    assert resolve_ports({"a": "b", "b": 5, "c": "443", "d": "nowhere"}) == {"a": 5, "b": 5, "c": 443}
    with pytest.raises(TaskInfoError) as info:
        resolve_ports({"a": "b", "b": "a"})
    assert "cycle" in str(info.value)
    message = failure(mesos_job(announce={"portmap": {"x": "y", "y": "x"}}))
    assert message.startswith(PREFIX) and message.count(PREFIX) == 1
