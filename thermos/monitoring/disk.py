"""Sandbox disk usage: a walker that stays cheap on deep trees, and Aurora's collectors.

Aurora started a `du` thread per task every minute; on a sandbox with a large tree (an unpacked
JDK, a node_modules) each walk took seconds of CPU, times the number of tasks. A `DiskCollector`
instead walks its tree in small steps under a time budget, resumes where it stopped on the next
step, and starts a new walk only `interval` seconds after the previous one finished. The reported
value is the last *complete* walk, so it never shows a half-counted tree. `NullDiskCollector` is
the off switch.

Aurora's interface is here too, for code written against it: `DuDiskCollector(root)` (a
background `du` per `sample()`) and `MesosDiskCollector(root, settings)`, which asks the Mesos
agent's `/containers` endpoint for the sandbox's usage instead of walking it at all (Aurora saw
observer CPU fall from ~1.5 cores to 0.4 on hosts with deep sandboxes). Both report through
`value` (0 before the first result) and `completed_event`.
"""

from __future__ import annotations

import abc
import http.client
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # urllib and jmespath load only for the Mesos collector: executors rarely need them
    import jmespath.parser

log = logging.getLogger(__name__)

BLOCK_SIZE = 512  # st_blocks unit, whatever the file system block size
DEFAULT_INTERVAL = 60.0


def _file_bytes(entry: os.DirEntry[str], seen: set[tuple[int, int]]) -> int:
    """Allocated bytes of a regular file, counting a hard-linked inode once (as du does)."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return 0
    if st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return 0
        seen.add(key)
    return st.st_blocks * BLOCK_SIZE


class DiskCollector:
    """Allocated bytes of the regular files under `root`, measured incrementally."""

    def __init__(self, root: str, interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._root = root
        self._interval = interval
        self._clock = clock
        self._value = 0
        self._completed_at: float | None = None
        self._stack: list[str] | None = None
        self._partial = 0
        self._seen: set[tuple[int, int]] = set()

    @property
    def root(self) -> str:
        return self._root

    @property
    def enabled(self) -> bool:
        return True

    @property
    def value(self) -> int:
        """Bytes counted by the last complete walk (0 before the first one finishes)."""
        return self._value

    @property
    def completed_at(self) -> float | None:
        return self._completed_at

    def due(self) -> bool:
        """Whether a walk is in progress or a new one should start."""
        if self._stack is not None:
            return True
        return self._completed_at is None or self._clock() - self._completed_at >= self._interval

    def step(self, budget: float | None = 0.005) -> bool:
        """Walk for at most about `budget` seconds (None: to the end); True if a walk completed."""
        if not self.due():
            return False
        if self._stack is None:
            self._stack, self._partial, self._seen = [self._root], 0, set()
        deadline = None if budget is None else time.perf_counter() + budget
        stack, seen = self._stack, self._seen
        while stack:
            directory = stack.pop()
            try:
                with os.scandir(directory) as it:
                    for entry in it:
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                stack.append(entry.path)
                            elif entry.is_file(follow_symlinks=False):
                                self._partial += _file_bytes(entry, seen)
                        except OSError:
                            continue
            except OSError:
                pass  # vanished or unreadable: count what is left
            if deadline is not None and stack and time.perf_counter() >= deadline:
                return False
        self._value, self._completed_at = self._partial, self._clock()
        self._stack, self._seen = None, set()
        return True

    def collect(self) -> int:
        """Finish (or run) a whole walk now and return its result."""
        if self._stack is None:
            self._completed_at = None
        self.step(budget=None)
        return self._value


class NullDiskCollector(DiskCollector):
    """Disk collection turned off: always 0, never walks."""

    def __init__(self, root: str = "", interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(root, interval, clock)

    @property
    def enabled(self) -> bool:
        return False

    def due(self) -> bool:
        return False

    def collect(self) -> int:
        return 0


def du(path: str) -> int:
    """Allocated bytes of the regular files under `path`, in one go."""
    return du_split(path)[0]


def du_split(path: str, inner: str | None = None) -> tuple[int, int]:
    """`(bytes outside inner, bytes inside inner)` of the tree at `path`, in a single walk.

    Lets GC size a sandbox and the log directory inside it without walking the logs twice.
    `inner` is compared as a normalised path, without resolving symlinks.
    """
    inner = os.path.normpath(inner) if inner else None
    totals = [0, 0]
    seen: set[tuple[int, int]] = set()
    stack = [(os.path.normpath(path), 1 if inner == os.path.normpath(path) else 0)]
    while stack:
        directory, bucket = stack.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((entry.path, 1 if bucket or entry.path == inner else 0))
                        elif entry.is_file(follow_symlinks=False):
                            totals[bucket] += _file_bytes(entry, seen)
                    except OSError:
                        continue
        except OSError:
            continue
    return totals[0], totals[1]


# ---- Aurora's collectors: a background collection per sample() --------------------------------


class _CollectionThread(threading.Thread):
    """One collection in the background; `event` is set when `value` holds its result."""

    def __init__(self, collect: Callable[[], int], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._collect = collect
        self.value: int | None = None
        self.event = threading.Event()

    def run(self) -> None:
        try:
            self.value = self._collect()
        except Exception:  # noqa: BLE001 - a broken collection reports the error value, never kills
            log.exception("Disk collection failed")
            self.value = AbstractDiskCollector.ERROR_VALUE
        finally:
            self.event.set()

    def finished(self) -> bool:
        return self.event.is_set()


class AbstractDiskCollector(abc.ABC):
    """Aurora's collector interface: `sample()` starts a collection in the background unless one
    is running; `value` is the last finished result (0 before the first); `completed_event` is set
    when the running collection finishes (a never-set event when none runs: wait with a timeout).
    """

    ERROR_VALUE = -1

    def __init__(self, root: str, settings: DiskCollectorSettings | None = None) -> None:
        self._root = root
        self._settings = settings
        self._lock = threading.Lock()
        self._thread: _CollectionThread | None = None
        self._value = 0

    @property
    def root(self) -> str:
        return self._root

    @abc.abstractmethod
    def _collect(self) -> int:
        """Bytes used under the root (ERROR_VALUE when they cannot be known); runs in the thread."""

    def sample(self) -> None:
        """Start a collection unless one is already running."""
        with self._lock:
            if self._thread is None:
                self._thread = _CollectionThread(self._collect, "%s[%s]" % (type(self).__name__, self._root))
                self._thread.start()

    @property
    def value(self) -> int:
        """Bytes found by the last finished collection (0 before the first)."""
        with self._lock:
            thread = self._thread
            if thread is not None and thread.finished():
                self._value = thread.value if thread.value is not None else self.ERROR_VALUE
                self._thread = None
            return self._value

    @property
    def completed_event(self) -> threading.Event:
        with self._lock:
            return self._thread.event if self._thread is not None else threading.Event()


class DuDiskCollector(AbstractDiskCollector):
    """Aurora's default: a `du` of the sandbox (allocated bytes of its regular files) per sample."""

    def _collect(self) -> int:
        started = time.monotonic()
        value = du(self._root)
        log.debug("du of %s: %d bytes in %.1f ms", self._root, value, (time.monotonic() - started) * 1e3)
        return value


class DiskCollectorSettings:
    """Where and how to ask the Mesos agent for disk usage (`MesosDiskCollector`).

    The two paths are JMESPath expressions, because agent versions shape `/containers` entries
    differently; they are compiled here so that a malformed one fails at start-up (ValueError),
    not once a minute. Durations are seconds.
    """

    DEFAULT_AGENT_CONTAINERS_ENDPOINT = "http://localhost:5051/containers"
    DEFAULT_EXECUTOR_ID_PATH = "executor_id"
    DEFAULT_DISK_USAGE_PATH = "statistics.disk_used_bytes"
    DEFAULT_DISK_COLLECTION_TIMEOUT = 5.0
    DISK_COLLECTION_INTERVAL = DEFAULT_INTERVAL

    def __init__(self, http_api_url: str = DEFAULT_AGENT_CONTAINERS_ENDPOINT,
                 executor_id_json_path: str = DEFAULT_EXECUTOR_ID_PATH,
                 disk_usage_json_path: str = DEFAULT_DISK_USAGE_PATH,
                 disk_collection_timeout: float = DEFAULT_DISK_COLLECTION_TIMEOUT,
                 disk_collection_interval: float = DISK_COLLECTION_INTERVAL) -> None:
        self._http_api_url = http_api_url
        self._executor_id_json_path = executor_id_json_path
        self._disk_usage_json_path = disk_usage_json_path
        self._executor_id_json_expression = _compile(
            executor_id_json_path, "executor_id_json_path", self.DEFAULT_EXECUTOR_ID_PATH)
        self._disk_usage_json_expression = _compile(
            disk_usage_json_path, "disk_usage_json_path", self.DEFAULT_DISK_USAGE_PATH)
        self._disk_collection_timeout = float(disk_collection_timeout)
        self._disk_collection_interval = float(disk_collection_interval)
        if self._disk_collection_timeout <= 0:
            raise ValueError("disk_collection_timeout must be positive, got %r" % disk_collection_timeout)

    @property
    def http_api_url(self) -> str:
        return self._http_api_url

    @property
    def executor_id_json_path(self) -> str:
        return self._executor_id_json_path

    @property
    def disk_usage_json_path(self) -> str:
        return self._disk_usage_json_path

    @property
    def executor_id_json_expression(self) -> jmespath.parser.ParsedResult:
        return self._executor_id_json_expression

    @property
    def disk_usage_json_expression(self) -> jmespath.parser.ParsedResult:
        return self._disk_usage_json_expression

    @property
    def disk_collection_timeout(self) -> float:
        return self._disk_collection_timeout

    @property
    def disk_collection_interval(self) -> float:
        return self._disk_collection_interval


def _compile(expression: str, option: str, example: str) -> jmespath.parser.ParsedResult:
    import jmespath
    import jmespath.exceptions

    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as err:
        raise ValueError("%s %r is not a JMESPath expression (%s); the default is %r" % (
            option, expression, str(err).splitlines()[0], example)) from None


class AgentLookupError(Exception):
    """The agent's answer did not give this sandbox's disk usage (the message says why)."""


@lru_cache(maxsize=1)
def _opener() -> Any:
    """Direct connections only: the agent is local, and a proxy from the environment must not see it."""
    import urllib.request

    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_containers(url: str, timeout: float) -> Any:
    import urllib.error
    import urllib.request

    try:
        with _opener().open(urllib.request.Request(url, headers={"Accept": "application/json"}),
                          timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as err:
        raise AgentLookupError("the agent at %s answered HTTP %d %s" % (url, err.code, err.reason)) from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise AgentLookupError("the agent at %s did not answer within %g s" % (url, timeout)) from None
        raise AgentLookupError("cannot reach the agent at %s: %s" % (url, err.reason)) from None
    except TimeoutError:
        raise AgentLookupError("the agent at %s did not answer within %g s" % (url, timeout)) from None
    except (http.client.HTTPException, OSError, ValueError) as err:
        reason = str(err) or type(err).__name__
        raise AgentLookupError("cannot read from the agent at %s: %s" % (url, reason)) from None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AgentLookupError("the agent at %s did not answer with JSON" % url) from None


class _Fetch:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.containers: Any = None
        self.error: AgentLookupError | None = None
        self.waiters = 0  # collectors sharing this request besides the one that made it


_inflight: dict[tuple[str, float], _Fetch] = {}
_inflight_lock = threading.Lock()


def fetch_containers(url: str, timeout: float) -> Any:
    """The agent's `/containers` JSON; collectors asking while a request is in flight share it.

    When every task's collection falls due in the same sweep, the agent is asked once, not once
    per task (each answer lists every container anyway).
    """
    key = (url, timeout)
    with _inflight_lock:
        fetch = _inflight.get(key)
        leader = fetch is None
        if fetch is None:
            fetch = _inflight[key] = _Fetch()
        else:
            fetch.waiters += 1
    if leader:
        try:
            fetch.containers = _get_containers(url, timeout)
        except AgentLookupError as err:
            fetch.error = err
        finally:
            with _inflight_lock:
                del _inflight[key]
            fetch.done.set()
    # The leader's request is bounded by its socket timeouts; allow for connect + slow body.
    elif not fetch.done.wait(3 * timeout + 1.0):
        raise AgentLookupError("the agent at %s did not answer within %g s" % (url, timeout))
    if fetch.error is not None:
        raise fetch.error
    return fetch.containers


def container_disk_usage(containers: Any, sandbox: str, settings: DiskCollectorSettings) -> int:
    """Disk bytes of the one container whose executor id is a component of the sandbox path.

    Aurora tested `str(executor_id) in sandbox`, a substring test: an id that selected nothing
    became "None", and executor `thermos-a` matched the sandbox of `thermos-ab`. Here the id must
    be a whole path component (Mesos sandboxes are `.../executors/<executor_id>/runs/<run>`).
    """
    if not isinstance(containers, list):
        raise AgentLookupError("the agent at %s answered %s, not a list of containers" % (
            settings.http_api_url, type(containers).__name__))
    parts = set(PurePosixPath(sandbox).parts)
    matches = []
    for container in containers:
        executor_id = settings.executor_id_json_expression.search(container)
        if isinstance(executor_id, str) and executor_id in parts:
            matches.append(container)
    if len(matches) != 1:
        raise AgentLookupError("%s of the %d containers at %s has an executor id (%r) in %s" % (
            "none" if not matches else "more than one", len(containers), settings.http_api_url,
            settings.executor_id_json_path, sandbox))
    used = settings.disk_usage_json_expression.search(matches[0])
    if isinstance(used, bool) or not isinstance(used, int | float) or used < 0:
        raise AgentLookupError("the container of %s at %s has no disk usage at %r (found %r)" % (
            sandbox, settings.http_api_url, settings.disk_usage_json_path, used))
    return int(used)


class MesosDiskCollector(AbstractDiskCollector):
    """Disk usage of the sandbox as the Mesos agent reports it: one HTTP GET, no walk.

    Any failure (agent unreachable, timeout, HTTP error such as 401, an answer that is not a
    list, selectors that find nothing) gives -1, as in Aurora; each new kind of failure is logged
    once as a warning, repeats at debug level.
    """

    def __init__(self, root: str, settings: DiskCollectorSettings | None = None) -> None:
        super().__init__(root, settings or DiskCollectorSettings())
        self._last_error: str | None = None

    @property
    def settings(self) -> DiskCollectorSettings:
        assert self._settings is not None
        return self._settings

    def _collect(self) -> int:
        settings = self.settings
        started = time.monotonic()
        try:
            containers = fetch_containers(settings.http_api_url, settings.disk_collection_timeout)
            used = container_disk_usage(containers, self._root, settings)
        except AgentLookupError as err:
            message = str(err)
            (log.debug if message == self._last_error else log.warning)("MesosDiskCollector: %s", message)
            self._last_error = message
            return self.ERROR_VALUE
        self._last_error = None
        log.debug("MesosDiskCollector: %s uses %d bytes (%.1f ms)", self._root, used,
                  (time.monotonic() - started) * 1e3)
        return used
