"""Aurora's disk collectors, called as Aurora's tests and observer call them.

`DuDiskCollector` on a real directory; `MesosDiskCollector` against a real HTTP server on
127.0.0.1 that answers like the Mesos agent's `/containers` endpoint.
"""

import logging
import os
import tempfile

import pytest

from tests.monitoring.containers_agent import ContainersAgent, closed_port_url, container
from thermos.monitoring import disk
from thermos.monitoring.disk import DiskCollectorSettings, DuDiskCollector, MesosDiskCollector
from thermos.testing.wait import wait_until

MB = 1024 * 1024
AMOUNT_1, AMOUNT_2 = 10 * MB, 1 * MB
ERROR = -1
SANDBOX = "/var/lib/path/to/thermos-some-task-id"


def make_file(size, directory):
    fd, filename = tempfile.mkstemp(dir=directory)
    with os.fdopen(fd, "wb") as fp:
        fp.write(b"0" * size)
    return filename


def collect(collector):
    """Aurora's test `wait()`: start a collection and wait for it to finish."""
    collector.sample()
    assert collector.completed_event.wait(30), "collection did not finish within 30 s"


@pytest.fixture
def agent():
    server = ContainersAgent()
    try:
        yield server
    finally:
        server.close()


def settings_for(url, **kw):
    kw.setdefault("disk_collection_timeout", 1.0)
    kw.setdefault("disk_collection_interval", 1.0)
    return DiskCollectorSettings(http_api_url=url, **kw)


def test_du_disk_collector_follows_files_being_added_and_removed(tmp_path):
    collector = DuDiskCollector(str(tmp_path))
    assert collector.value == 0
    assert not collector.completed_event.is_set()  # nothing running: an event that never fires
    collect(collector)
    assert collector.value == 0
    f1 = make_file(AMOUNT_1, str(tmp_path))
    collect(collector)
    assert collector.value >= AMOUNT_1
    make_file(AMOUNT_2, str(tmp_path))
    collect(collector)
    assert collector.value >= AMOUNT_1 + AMOUNT_2
    os.unlink(f1)
    collect(collector)
    assert AMOUNT_1 + AMOUNT_2 > collector.value >= AMOUNT_2


def test_du_disk_collector_accepts_settings_like_aurora(tmp_path):
    make_file(AMOUNT_2, str(tmp_path))
    collector = DuDiskCollector(str(tmp_path), settings=DiskCollectorSettings())
    collect(collector)
    assert collector.value >= AMOUNT_2


def test_mesos_disk_collector_reads_successive_answers(agent):
    agent.answer([container("thermos-some-task-id", 100)], [container("thermos-some-task-id", 200)])
    collector = MesosDiskCollector(SANDBOX, settings_for(agent.url()))
    assert collector.value == 0
    collect(collector)
    assert collector.value == 100
    collect(collector)
    assert collector.value == 200
    assert agent.requests == [("GET", "/containers")] * 2


def test_mesos_disk_collector_picks_its_own_container_among_many(agent):
    agent.answer([container("thermos-other", 5), container("thermos-some-task-id", 4096),
                  container("thermos-third", 7)])
    collector = MesosDiskCollector(SANDBOX, settings_for(agent.url()))
    collect(collector)
    assert collector.value == 4096


def test_mesos_disk_collector_bad_api_path(agent):
    agent.answer([container("thermos-some-task-id", 100)])
    collector = MesosDiskCollector(SANDBOX, settings_for(agent.url("/wrong_path")))
    collect(collector)
    assert collector.value == ERROR
    assert agent.requests == [("GET", "/wrong_path")]


def test_mesos_disk_collector_unexpected_response_format(agent):
    agent.answer({"status": "bad_request"})
    collector = MesosDiskCollector(SANDBOX, settings_for(agent.url()))
    collect(collector)
    assert collector.value == ERROR


def test_mesos_disk_collector_answer_that_is_not_json(agent):
    agent.answer(b"<html>agent starting</html>")
    collector = MesosDiskCollector(SANDBOX, settings_for(agent.url()))
    collect(collector)
    assert collector.value == ERROR


@pytest.mark.parametrize("selectors", [dict(executor_id_json_path="bad_path"),
                                       dict(disk_usage_json_path="bad_path")])
def test_mesos_disk_collector_bad_selectors(agent, selectors):
    agent.answer([container("thermos-some-task-id", 100)])
    collector = MesosDiskCollector(SANDBOX, settings_for(agent.url(), **selectors))
    assert collector.value == 0
    collect(collector)
    assert collector.value == ERROR
    assert agent.requests == [("GET", "/containers")]


def test_mesos_disk_collector_selectors_for_another_agent_format(agent):
    agent.answer([{"container": {"executor": {"id": "thermos-some-task-id"}},
                   "usage": {"disk": {"used": 12345}}}])
    collector = MesosDiskCollector(SANDBOX, settings_for(
        agent.url(), executor_id_json_path="container.executor.id", disk_usage_json_path="usage.disk.used"))
    collect(collector)
    assert collector.value == 12345


def test_malformed_selector_fails_at_construction_naming_the_option():
    with pytest.raises(ValueError, match=r"^executor_id_json_path 'executor_id\[' is not a JMESPath "):
        DiskCollectorSettings(executor_id_json_path="executor_id[")
    with pytest.raises(ValueError, match="^disk_usage_json_path "):
        DiskCollectorSettings(disk_usage_json_path="statistics..x")


def test_mesos_disk_collector_when_unauthorized(agent):
    agent.answer([container("thermos-some-task-id", 100)], status=401)
    collector = MesosDiskCollector(SANDBOX, settings_for(agent.url()))
    collect(collector)
    assert collector.value == ERROR
    assert agent.requests == [("GET", "/containers")]


def test_mesos_disk_collector_when_connection_error():
    collector = MesosDiskCollector(SANDBOX, settings_for(closed_port_url()))
    collect(collector)
    assert collector.value == ERROR


def test_mesos_disk_collector_timeout(agent):
    agent.answer([container("thermos-some-task-id", 100)])
    agent.hold()  # the agent never answers while the collector waits
    collector = MesosDiskCollector(SANDBOX, settings_for(agent.url(), disk_collection_timeout=0.2))
    collect(collector)
    assert collector.value == ERROR
    assert agent.requests == [("GET", "/containers")]


def test_executor_id_must_be_a_whole_path_component(agent):
    """Aurora's substring test matched `thermos-a` inside `.../thermos-ab` (two matches: -1)."""
    sandbox = "/var/lib/mesos/slaves/S0/frameworks/F/executors/thermos-ab/runs/latest"
    agent.answer([container("thermos-a", 100), container("thermos-ab", 200)])
    collector = MesosDiskCollector(sandbox, settings_for(agent.url()))
    collect(collector)
    assert collector.value == 200


def test_a_selector_that_finds_nothing_never_matches_a_path_containing_none(agent):
    agent.answer([{"statistics": {"disk_used_bytes": 100}}])  # no executor_id: Aurora compared "None"
    collector = MesosDiskCollector("/var/lib/None/sandbox", settings_for(agent.url()))
    collect(collector)
    assert collector.value == ERROR


def test_collectors_asking_at_once_share_one_request(agent):
    sandboxes = ["/mesos/executors/thermos-%d/runs/latest" % i for i in range(5)]
    agent.answer([container("thermos-%d" % i, 1000 + i) for i in range(5)])
    agent.hold()
    settings = settings_for(agent.url(), disk_collection_timeout=5.0)
    collectors = [MesosDiskCollector(sandbox, settings) for sandbox in sandboxes]
    collectors[0].sample()
    assert agent.wait_held()
    for collector in collectors[1:]:
        collector.sample()
    key = (settings.http_api_url, settings.disk_collection_timeout)
    wait_until(lambda: key in disk._inflight and disk._inflight[key].waiters == 4)
    agent.release()
    for collector in collectors:
        assert collector.completed_event.wait(10)
    assert [c.value for c in collectors] == [1000, 1001, 1002, 1003, 1004]
    assert agent.requests == [("GET", "/containers")]


def test_a_repeated_failure_is_logged_once(agent, caplog):
    agent.answer([], status=401)
    collector = MesosDiskCollector(SANDBOX, settings_for(agent.url()))
    with caplog.at_level(logging.WARNING, logger="thermos.monitoring.disk"):
        collect(collector)
        collect(collector)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "answered HTTP 401" in warnings[0]


def test_du_disk_collector_counts_a_hard_linked_file_once(tmp_path):
    original = make_file(AMOUNT_2, str(tmp_path))
    os.link(original, tmp_path / "second_link")
    collector = DuDiskCollector(str(tmp_path))
    collect(collector)
    assert AMOUNT_2 <= collector.value < 2 * AMOUNT_2


def test_a_proxy_in_the_environment_is_not_used_for_the_agent(agent, monkeypatch):
    monkeypatch.setenv("http_proxy", closed_port_url())
    monkeypatch.setenv("HTTP_PROXY", closed_port_url())
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    agent.answer([container("thermos-some-task-id", 100)])
    collector = MesosDiskCollector(SANDBOX, settings_for(agent.url()))
    collect(collector)
    assert collector.value == 100
