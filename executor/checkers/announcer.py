"""Announce the task in ZooKeeper as a ServerSet member while it runs (spec §1.8).

The member is an ephemeral, sequential znode ``<path>/member_NNNNNNNNNN`` holding
``{"serviceEndpoint": {"host", "port"}, "additionalEndpoints": {name: {"host", "port"}},
"status": "ALIVE", "shard": <instance>}``, at ``<serverset root>/<role>/<environment>/<job>``
(or the task's ``announce.zk_path`` with ``--announcer-allow-custom-serverset-path``).

The checker never gates RUNNING: its status stays None unless no ZooKeeper connection was made
within the connect timeout (``Creating Announcer Serverset timed out.``). A session that expires
or a member znode that disappears is re-created as soon as the client is connected again; a
failed create is retried every `retry_interval_secs`. `stop()` deletes the member before it
returns, and the executor stops checkers before it kills the runner, so the task is withdrawn
from service discovery before its processes get a signal.

Difference from Aurora: a zk_path the flags do not allow is a TASK_FAILED with one line instead
of killing the executor process. A ``primary_port`` the task does not have is announced as port
0, as Aurora does, with a warning in the executor log.
"""

from __future__ import annotations

import json
import logging
import posixpath
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.retry import KazooRetry
from kazoo.security import ACL, make_acl, make_digest_acl_credential
from thermos.executor.checkers.base import TASK_FAILED, StatusChecker, StatusResult
from thermos.executor.task_info import ExecutorTask

log = logging.getLogger(__name__)

DEFAULT_SERVERSET_PATH = '/aurora'
CONNECT_TIMED_OUT = 'Creating Announcer Serverset timed out.'
RETRY_INTERVAL_SECS = 15.0
MEMBER_PREFIX = 'member_'


class AnnouncerConfigError(ValueError):
    """A bad ``--announcer-*`` setting; ``str()`` is one line for the executor to print."""


@dataclass(frozen=True)
class ZkAuth:
    """Credentials to add to the session and the ACL to put on created znodes."""

    auth_data: list[tuple[str, str]] = field(default_factory=list)
    default_acl: list[ACL] = field(default_factory=list)


_PERMISSIONS = ('read', 'write', 'create', 'delete', 'admin')


def load_zk_auth(path: str) -> ZkAuth:
    """Parse an ``--announcer-zookeeper-auth-config`` file (strict JSON, Aurora's format)::

        {"auth": [{"scheme": "digest", "credential": "user:pass"}],
         "acl": [{"scheme": "digest", "credential": "user:pass", "permissions": {"read": true, ...}}]}

    ``digest`` ACL credentials are hashed as ZooKeeper expects; auth credentials are sent raw.
    """
    where = '--announcer-zookeeper-auth-config %s' % path
    try:
        with open(path) as fp:
            blob = json.load(fp)
    except OSError as e:
        raise AnnouncerConfigError('%s: %s' % (where, e.strerror or e)) from None
    except ValueError as e:
        raise AnnouncerConfigError('%s: invalid JSON: %s' % (where, e)) from None
    if not isinstance(blob, dict) or set(blob) - {'auth', 'acl'}:
        raise AnnouncerConfigError('%s: expected an object with only "auth" and "acl" lists' % where)
    auth, acls = blob.get('auth', []), blob.get('acl', [])
    if not isinstance(auth, list) or not isinstance(acls, list):
        raise AnnouncerConfigError('%s: "auth" and "acl" must be lists' % where)
    auth_data = []
    for entry in auth:
        if not isinstance(entry, dict) or set(entry) != {'scheme', 'credential'} or not all(
                isinstance(value, str) for value in entry.values()):
            raise AnnouncerConfigError('%s: each auth entry needs string "scheme" and "credential" (got %s)'
                                       % (where, json.dumps(entry)))
        auth_data.append((entry['scheme'], entry['credential']))
    default_acl = []
    for entry in acls:
        if (not isinstance(entry, dict) or not {'scheme', 'credential'} <= set(entry)
                or set(entry) - {'scheme', 'credential', 'permissions'}
                or not isinstance(entry['scheme'], str) or not isinstance(entry['credential'], str)):
            raise AnnouncerConfigError('%s: each acl entry needs string "scheme" and "credential" and '
                                       'optional "permissions" (got %s)' % (where, json.dumps(entry)))
        permissions = entry.get('permissions', {})
        if not isinstance(permissions, dict) or set(permissions) - set(_PERMISSIONS) or not all(
                isinstance(value, bool) for value in permissions.values()):
            raise AnnouncerConfigError('%s: acl permissions must map %s to true/false (got %s)'
                                       % (where, '/'.join(_PERMISSIONS), json.dumps(permissions)))
        credential = entry['credential']
        if entry['scheme'] == 'digest':
            user, _, password = credential.partition(':')
            credential = make_digest_acl_credential(user, password)
        default_acl.append(make_acl(entry['scheme'], credential, **permissions))
    return ZkAuth(auth_data=auth_data, default_acl=default_acl)


def member_data(host: str, primary_port: int, ports: Mapping[str, int], shard: int) -> bytes:
    """The ServerSet member JSON."""
    endpoint = {'host': host, 'port': primary_port}
    additional = {name: {'host': host, 'port': port} for name, port in sorted(ports.items())}
    return json.dumps({'serviceEndpoint': endpoint, 'additionalEndpoints': additional,
                       'status': 'ALIVE', 'shard': shard}).encode()


class Announcer(StatusChecker):
    """Keeps one ServerSet member alive for the task until `stop()`."""

    def __init__(self, client: KazooClient, path: str, data: bytes, connect_timeout_secs: float = 15.0,
                 retry_interval_secs: float = RETRY_INTERVAL_SECS) -> None:
        self.client = client
        self.path = path
        self.data = data
        self.connect_timeout_secs = connect_timeout_secs
        self.retry_interval_secs = retry_interval_secs
        self.member: str | None = None  # full znode path of our member while announced
        self._status: StatusResult | None = None
        self._wake = threading.Event()  # something to do: join, rejoin, or stop
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._disconnected_since: float | None = time.monotonic()
        self._joins = 0

    @property
    def name(self) -> str:
        return 'announcer'

    @property
    def status(self) -> StatusResult | None:
        return self._status

    @property
    def joins(self) -> int:
        """How many times a member was created (1 + re-announcements)."""
        return self._joins

    def metrics(self) -> dict[str, float]:
        since = self._disconnected_since
        return {'disconnected_time': 0.0 if since is None else time.monotonic() - since}

    def start(self) -> None:
        """Connect and announce in the background; returns at once."""
        if self._thread is not None:
            return
        self.client.add_listener(self._on_state)
        self._thread = threading.Thread(target=self._run, name='announcer', daemon=True)
        self._thread.start()

    def _on_state(self, state: str) -> None:
        """Kazoo's listener: must not block, so it only records and wakes the worker."""
        if state == KazooState.CONNECTED:
            self._disconnected_since = None
            self._wake.set()
        else:
            if self._disconnected_since is None:
                self._disconnected_since = time.monotonic()
            if state == KazooState.LOST:  # session expired: the ephemeral member is gone
                with self._lock:
                    self.member = None

    def _watch_member(self, member: str) -> None:
        """When `member` is deleted (by anyone, or with its session), announce again."""

        def changed(data: bytes | None, stat: object) -> bool | None:
            if stat is not None:
                return None
            with self._lock:
                if self.member == member:  # not a member we already replaced
                    self.member = None
            if not self._stopping.is_set():
                self._wake.set()
            return False  # stop watching this znode; the next member gets its own watch

        self.client.DataWatch(member, changed)

    def _run(self) -> None:
        try:
            self.client.start_async().wait(self.connect_timeout_secs)
        except Exception as e:
            log.error('announcer: cannot start the ZooKeeper client: %s', e)
        if not self.client.connected and not self._stopping.is_set():
            log.error('announcer: no ZooKeeper connection within %.1f s', self.connect_timeout_secs)
            self._status = StatusResult(CONNECT_TIMED_OUT, TASK_FAILED)
            return
        while not self._stopping.is_set():
            self._wake.clear()
            if self.client.connected and self.member is None:
                try:
                    self._join()
                except (KazooException, OSError) as e:
                    log.warning('announcer: join failed (%s); retrying in %.0f s', e,
                                self.retry_interval_secs)
                    self._stopping.wait(self.retry_interval_secs)
                    continue
            self._wake.wait()

    def _join(self) -> None:
        member = self.client.create(posixpath.join(self.path, MEMBER_PREFIX), self.data, ephemeral=True,
                                    sequence=True, makepath=True)
        with self._lock:
            if self._stopping.is_set():  # stop() raced us: do not leave a member behind
                self.client.delete(member)
                return
            self.member = member
            self._joins += 1
        log.info('announcer: joined %s', member)
        self._watch_member(member)

    def stop(self, timeout_secs: float = 10.0) -> None:
        """Withdraw the member (before returning) and close the client. Bounded by `timeout_secs`."""
        self._stopping.set()
        self._wake.set()
        with self._lock:
            member, self.member = self.member, None
        if member is not None and self.client.connected:
            try:
                self.client.delete_async(member).get(timeout=timeout_secs)
                log.info('announcer: withdrew %s', member)
            except NoNodeError:
                pass
            except Exception as e:  # the session ending removes it anyway
                log.warning('announcer: could not delete %s: %s', member, e)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_secs)
        try:
            self.client.stop()
            self.client.close()
        except Exception as e:
            log.warning('announcer: closing the ZooKeeper client: %s', e)


class _Refused(StatusChecker):
    """A checker that is FAILED from the start (a setting that makes announcing impossible)."""

    def __init__(self, reason: str) -> None:
        self._result = StatusResult(reason, TASK_FAILED)

    @property
    def name(self) -> str:
        return 'announcer'

    @property
    def status(self) -> StatusResult:
        return self._result


class AnnouncerProvider:
    """Builds the task's announcer from the ``--announcer-*`` flags (None: no announce section)."""

    def __init__(self, ensemble: str, root: str = DEFAULT_SERVERSET_PATH,
                 allow_custom_serverset_path: bool = False, hostname: str | None = None,
                 zk_auth: ZkAuth | None = None,
                 retry_interval_secs: float = RETRY_INTERVAL_SECS) -> None:
        self.ensemble = ensemble
        self.root = root
        self.allow_custom_serverset_path = allow_custom_serverset_path
        self.hostname = hostname
        self.zk_auth = zk_auth or ZkAuth()
        self.retry_interval_secs = retry_interval_secs

    def path_for(self, task: ExecutorTask) -> str:
        """Where the task's members live: under the scheduler's JobKey, as Aurora announces."""
        if task.announce is not None and task.announce.zk_path:
            if not self.allow_custom_serverset_path:
                raise AnnouncerConfigError(
                    "announce.zk_path '%s' is not allowed: start the executor with "
                    '--announcer-allow-custom-serverset-path' % task.announce.zk_path)
            return task.announce.zk_path
        key = task.assigned_task.task.job
        role = key.role if key is not None and key.role else task.role
        return posixpath.join(self.root, role, task.environment, task.job_name)

    def client(self) -> KazooClient:
        return KazooClient(
            hosts=self.ensemble,
            connection_retry=KazooRetry(max_tries=-1, ignore_expire=True, max_delay=300),
            auth_data=self.zk_auth.auth_data or None,
            default_acl=self.zk_auth.default_acl or None)

    def from_task(self, task: ExecutorTask, sandbox_root: str | None) -> StatusChecker | None:
        if task.announce is None:
            return None
        try:
            path = self.path_for(task)
        except AnnouncerConfigError as e:
            return _Refused(str(e))
        host = self.hostname or task.hostname
        primary = task.ports.get(task.announce.primary_port, 0)
        if primary == 0:
            log.warning('announcer: primary port %r is not one of the task\'s ports; announcing port 0',
                        task.announce.primary_port)
        check = task.health_check
        timeout = check.initial_interval_secs + check.max_consecutive_failures * check.interval_secs
        return Announcer(self.client(), path, member_data(host, primary, task.ports, task.instance),
                         connect_timeout_secs=timeout, retry_interval_secs=self.retry_interval_secs)
