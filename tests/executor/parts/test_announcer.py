"""ServerSet announcements in a real ZooKeeper server (Debian's package) on 127.0.0.1."""

import json
import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_digest_acl_credential
from thermos.executor.checkers.announcer import (
    Announcer,
    AnnouncerConfigError,
    AnnouncerProvider,
    load_zk_auth,
    member_data,
)
from thermos.executor.checkers.base import TASK_FAILED
from thermos.executor.task_info import decode_assigned_task, executor_task_from_assigned_task

from tests.executor.parts.payloads import mesos_job, task_info_data
from tests.executor.parts.servers import free_port
from thermos.testing.wait import wait_until


def decoded(**kw):
    return executor_task_from_assigned_task(decode_assigned_task(task_info_data(**kw)))


@pytest.fixture
def observer(zookeeper):
    client = KazooClient(hosts=zookeeper.connect_string)
    client.start(timeout=30)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def root():
    return "/test-%s" % uuid.uuid4().hex[:8]


def members(client, path):
    if not client.exists(path):
        return {}
    return {name: json.loads(client.get("%s/%s" % (path, name))[0]) for name in client.get_children(path)}


def announced_task(**extra):
    job = mesos_job(announce={"primary_port": "http"}, **extra)
    return decoded(executor_data=job, ports={"http": 31000, "admin": 31001}, instance=4, role="www",
                   environment="prod", job_name="proxy", host="agent7.example")


def test_member_is_announced_and_withdrawn_on_stop(zookeeper, observer, root):
    announcer = AnnouncerProvider(zookeeper.connect_string, root=root).from_task(announced_task(), None)
    path = root + "/www/prod/proxy"
    announcer.start()
    try:
        wait_until(lambda: members(observer, path), timeout=30)
        [(name, data)] = members(observer, path).items()
        assert name.startswith("member_") and len(name) == len("member_") + 10
        assert data == {
            "serviceEndpoint": {"host": "agent7.example", "port": 31000},
            "additionalEndpoints": {"admin": {"host": "agent7.example", "port": 31001},
                                    "aurora": {"host": "agent7.example", "port": 31000},
                                    "http": {"host": "agent7.example", "port": 31000}},
            "status": "ALIVE", "shard": 4}
        assert observer.exists("%s/%s" % (path, name)).ephemeralOwner != 0
        assert announcer.status is None  # never gates RUNNING
    finally:
        announcer.stop()
    # Withdrawn by the time stop() returns (before the runner would be killed).
    assert members(observer, path) == {}


def test_re_announces_after_session_expiry(zookeeper, observer, root):
    announcer = AnnouncerProvider(zookeeper.connect_string, root=root).from_task(announced_task(), None)
    path = root + "/www/prod/proxy"
    announcer.start()
    try:
        wait_until(lambda: members(observer, path), timeout=30)
        [first] = members(observer, path)
        # Expire the announcer's session: a second client joins it and closes it.
        session_id, password = announcer.client.client_id
        intruder = KazooClient(hosts=zookeeper.connect_string, client_id=(session_id, password))
        intruder.start(timeout=30)
        intruder.stop()
        intruder.close()
        wait_until(lambda: set(members(observer, path)) - {first}, timeout=60)
        assert len(members(observer, path)) == 1 and announcer.joins == 2
    finally:
        announcer.stop()
    assert members(observer, path) == {}


def test_re_announces_when_the_member_is_deleted(zookeeper, observer, root):
    announcer = AnnouncerProvider(zookeeper.connect_string, root=root).from_task(announced_task(), None)
    path = root + "/www/prod/proxy"
    announcer.start()
    try:
        wait_until(lambda: members(observer, path), timeout=30)
        [first] = members(observer, path)
        observer.delete("%s/%s" % (path, first))
        wait_until(lambda: set(members(observer, path)) - {first}, timeout=30)
        assert len(members(observer, path)) == 1
    finally:
        announcer.stop()


def test_hostname_override_and_missing_primary_port(zookeeper, observer, root):
    task = decoded(executor_data=mesos_job(announce={"primary_port": "thrift"}), ports={"http": 8},
                   role="www", environment="prod", job_name="proxy")
    provider = AnnouncerProvider(zookeeper.connect_string, root=root, hostname="vip.example")
    announcer = provider.from_task(task, None)
    announcer.start()
    try:
        wait_until(lambda: members(observer, root + "/www/prod/proxy"), timeout=30)
        [data] = members(observer, root + "/www/prod/proxy").values()
        assert data["serviceEndpoint"] == {"host": "vip.example", "port": 0}
        assert data["additionalEndpoints"] == {"http": {"host": "vip.example", "port": 8}}
    finally:
        announcer.stop()


def test_custom_zk_path_needs_the_flag(zookeeper, observer, root):
    task = decoded(executor_data=mesos_job(announce={"zk_path": root + "/custom"}), ports={"http": 8})
    refused = AnnouncerProvider(zookeeper.connect_string).from_task(task, None)
    assert refused.status.status == TASK_FAILED
    assert "--announcer-allow-custom-serverset-path" in refused.status.reason
    provider = AnnouncerProvider(zookeeper.connect_string, allow_custom_serverset_path=True)
    allowed = provider.from_task(task, None)
    allowed.start()
    try:
        wait_until(lambda: members(observer, root + "/custom"), timeout=30)
    finally:
        allowed.stop()


def test_no_announce_no_checker(zookeeper):
    task = decoded(executor_data=mesos_job())
    assert AnnouncerProvider(zookeeper.connect_string).from_task(task, None) is None


def test_connect_timeout_fails_the_task():
    client = KazooClient(hosts="127.0.0.1:%d" % free_port())
    announcer = Announcer(client, "/x", member_data("h", 1, {}, 0), connect_timeout_secs=0.5)
    announcer.start()
    try:
        wait_until(lambda: announcer.status is not None, timeout=30)
        assert announcer.status.status == TASK_FAILED
        assert announcer.status.reason == "Creating Announcer Serverset timed out."
    finally:
        announcer.stop()


def test_digest_auth_and_acl(zookeeper, observer, root, tmp_path):
    config = tmp_path / "zkauth.json"
    config.write_text(json.dumps({
        "auth": [{"scheme": "digest", "credential": "svc:secret"}],
        "acl": [{"scheme": "digest", "credential": "svc:secret",
                 "permissions": {"read": True, "write": True, "create": True, "delete": True,
                                 "admin": True}}]}))
    auth = load_zk_auth(str(config))
    assert auth.auth_data == [("digest", "svc:secret")]
    assert auth.default_acl[0].id.id == make_digest_acl_credential("svc", "secret")
    announcer = AnnouncerProvider(zookeeper.connect_string, root=root, zk_auth=auth).from_task(
        announced_task(), None)
    announcer.start()
    try:
        path = root + "/www/prod/proxy"
        wait_until(lambda: observer.exists(path), timeout=30)
        with pytest.raises(NoAuthError):  # created with the digest ACL: others cannot even list it
            observer.get_children(path)
        observer.add_auth("digest", "svc:secret")
        wait_until(lambda: observer.get_children(path), timeout=30)
        [name] = observer.get_children(path)
        acl, _ = observer.get_acls("%s/%s" % (path, name))
        assert [a.id.scheme for a in acl] == ["digest"]
    finally:
        announcer.stop()


@pytest.mark.parametrize("content, message", [
    ("not json", "invalid JSON"),
    ('{"auth": [{"scheme": "digest"}]}', 'each auth entry needs string "scheme" and "credential"'),
    ('{"acl": [{"scheme": "world", "credential": "anyone", "permissions": {"fly": true}}]}',
     "acl permissions"),
    ('{"users": []}', 'only "auth" and "acl"'),
])
def test_bad_auth_config_is_one_line(tmp_path, content, message):
    config = tmp_path / "zkauth.json"
    config.write_text(content)
    with pytest.raises(AnnouncerConfigError) as info:
        load_zk_auth(str(config))
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("--announcer-zookeeper-auth-config %s: " % config)
