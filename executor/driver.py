"""The executor's link to the Mesos agent: a small driver interface and its pymesos implementation.

Executors (thermos_executor, gc_executor) program against `ExecutorDriver` and `Executor` only, so a
maintained client can replace pymesos later; this is the only module that imports pymesos.

`PyMesosDriver` is pymesos 0.3.15's `MesosExecutorDriver` with its protocol bugs fixed (each fix is
named where it is made):
* `MESOS_CHECKPOINT=0` means off (pymesos read any non-empty value as on);
* every status update is kept until the agent acknowledges it and re-sent in each SUBSCRIBE (pymesos
  kept none), and re-sent on a timer while connected, so an update sent while the agent is down or
  restarting is delivered once it is back;
* reconnect backoff is bounded by `MESOS_SUBSCRIPTION_BACKOFF_MAX` (pymesos went up to 15 s, past the
  agent's 2 s re-registration window), and a 503 or failed SUBSCRIBE is retried after a backoff, never
  in a busy loop;
* an exception in a callback (or in decoding an event) is logged, never fatal;
* the driver never calls `os.killpg(0, SIGKILL)` (pymesos did on every shutdown or disconnect);
* when the agent stays away longer than `MESOS_RECOVERY_TIMEOUT`, the driver gives up: it calls
  `shutdown()` on the executor and `join()` returns (pymesos waited a day).
"""

from __future__ import annotations

import base64
import logging
import os
import random
import re
import signal
import threading
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Status-update states an executor may send (TASK_STAGING is refused by the agent).
SENDABLE_STATES = frozenset({"TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED", "TASK_FAILED",
                             "TASK_KILLED", "TASK_LOST", "TASK_ERROR", "TASK_KILLING"})
TERMINAL_STATES = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR",
                             "TASK_DROPPED", "TASK_GONE"})

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ns|us|ms|secs|mins|hrs|days|weeks)\s*$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "secs": 1.0, "mins": 60.0, "hrs": 3600.0,
          "days": 86400.0, "weeks": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds in a Mesos duration such as `2secs`, `15mins` or `500ms`; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError("not a Mesos duration (want e.g. 2secs, 15mins, 500ms): %r" % text)
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class MesosEnvironment:
    """What the agent tells its executor through the environment (mesos.md §3.5)."""

    agent_endpoint: str
    framework_id: str
    executor_id: str
    directory: str
    sandbox: str
    agent_id: str | None = None
    checkpoint: bool = False
    recovery_timeout: float = 15 * 60.0
    subscription_backoff_max: float = 2.0
    shutdown_grace_period: float = 5.0

    class Error(ValueError):
        """A required variable is missing or malformed; the message names it."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> MesosEnvironment:
        env = dict(os.environ if env is None else env)
        missing = [name for name in ("MESOS_AGENT_ENDPOINT", "MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID")
                   if not env.get(name)]
        if missing:
            raise cls.Error("%s not set: thermos_executor must be started by a Mesos agent "
                            "(it sets MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID and MESOS_EXECUTOR_ID)"
                            % ", ".join(missing))

        def duration(name: str, default: float) -> float:
            value = env.get(name)
            if not value:
                return default
            try:
                return parse_duration(value)
            except ValueError as e:
                raise cls.Error("%s: %s" % (name, e)) from None

        directory = env.get("MESOS_DIRECTORY") or os.getcwd()
        return cls(
            agent_endpoint=env["MESOS_AGENT_ENDPOINT"],
            framework_id=env["MESOS_FRAMEWORK_ID"],
            executor_id=env["MESOS_EXECUTOR_ID"],
            directory=directory,
            sandbox=env.get("MESOS_SANDBOX") or directory,
            agent_id=env.get("MESOS_SLAVE_ID") or None,
            # Fix: the agent sets "1" or "0"; pymesos read "0" as on.
            checkpoint=env.get("MESOS_CHECKPOINT") == "1",
            recovery_timeout=duration("MESOS_RECOVERY_TIMEOUT", 15 * 60.0),
            subscription_backoff_max=duration("MESOS_SUBSCRIPTION_BACKOFF_MAX", 2.0),
            shutdown_grace_period=duration("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", 5.0),
        )


def encode_data(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_data(data: str) -> bytes:
    return base64.b64decode(data)


class Executor:
    """The callbacks a driver makes, all on its event thread: return quickly, do work elsewhere.

    Payloads are Mesos v1 JSON dicts (`task['task_id']['value']`; `task['data']` is still base64, see
    `decode_data`). The defaults log; subclasses override what they need. An exception raised here is
    logged by the driver and otherwise ignored.
    """

    def registered(self, driver: ExecutorDriver, executor_info: dict[str, Any],
                   framework_info: dict[str, Any], agent_info: dict[str, Any]) -> None:
        log.info("Registered with agent %s", agent_info.get("hostname", "?"))

    def reregistered(self, driver: ExecutorDriver, agent_info: dict[str, Any]) -> None:
        log.info("Re-registered with agent %s", agent_info.get("hostname", "?"))

    def disconnected(self, driver: ExecutorDriver) -> None:
        log.info("Disconnected from the agent")

    def launchTask(self, driver: ExecutorDriver, task: dict[str, Any]) -> None:  # noqa: N802
        log.warning("launchTask not handled: %s", task.get("task_id", {}).get("value"))

    def killTask(self, driver: ExecutorDriver, task_id: str) -> None:  # noqa: N802
        log.warning("killTask not handled: %s", task_id)

    def frameworkMessage(self, driver: ExecutorDriver, message: bytes) -> None:  # noqa: N802
        log.info("Framework message ignored (%d bytes)", len(message))

    def shutdown(self, driver: ExecutorDriver) -> None:
        log.info("Shutdown requested")

    def error(self, driver: ExecutorDriver, message: str) -> None:
        log.error("Agent reported an error: %s", message)


class ExecutorDriver(ABC):
    """What an executor may ask of its link to the agent."""

    @abstractmethod
    def start(self) -> None:
        """Connect and subscribe in the background."""

    @abstractmethod
    def stop(self) -> None:
        """Disconnect for good; `join()` returns. Idempotent."""

    @abstractmethod
    def join(self, timeout: float | None = None) -> bool:
        """Wait until stopped (True) or `timeout` passes (False)."""

    @abstractmethod
    def send_status_update(self, task_id: str, state: str, message: str | None = None,
                           data: bytes | None = None, healthy: bool | None = None,
                           reason: str | None = None) -> str:
        """Queue a status update; it is delivered, and re-delivered after reconnects, until the agent
        acknowledges it. Returns its uuid (base64)."""

    @abstractmethod
    def send_framework_message(self, data: bytes) -> None:
        """Best-effort message to the scheduler (dropped when not connected)."""

    @abstractmethod
    def wait_acknowledged(self, timeout: float) -> bool:
        """Wait until every update sent so far is acknowledged. False on timeout, or at once when the
        driver has given up on the agent (stopped, recovery timeout, disconnect without checkpoint)."""

    @property
    @abstractmethod
    def stop_reason(self) -> str | None:
        """Why the driver stopped: None while running."""


def _quiet_pymesos_logging() -> None:
    # pymesos/__init__ adds its own stderr handler at INFO: lines would be printed twice.
    plog = logging.getLogger("pymesos")
    for handler in list(plog.handlers):
        plog.removeHandler(handler)
    plog.propagate = True


import pymesos.process as _pprocess  # noqa: E402  (installs a SIGINT handler: import on the main thread)
from pymesos import MesosExecutorDriver as _PyMesosExecutorDriver  # noqa: E402

_quiet_pymesos_logging()


class _SafeCallbacks:
    """Forwards pymesos' callbacks to the executor with the driver interface's argument shapes;
    an exception is logged, never propagated (pymesos would die of it)."""

    def __init__(self, driver: PyMesosDriver, executor: Executor) -> None:
        self._driver = driver
        self._executor = executor

    def call(self, name: str, *args: Any) -> None:
        try:
            getattr(self._executor, name)(self._driver, *args)
        except Exception:
            log.exception("Executor callback %s raised; ignored", name)


class PyMesosDriver(ExecutorDriver):
    """The driver interface on pymesos 0.3.15, with the fixes of the module docstring."""

    WATCH_INTERVAL = 0.2
    RESEND_AFTER = 10.0  # re-send an un-acknowledged update this long after its last attempt

    def __init__(self, executor: Executor, env: MesosEnvironment | None = None,
                 http_timeout: float = 5.0) -> None:
        self.env = env or MesosEnvironment.from_env()
        self._callbacks = _SafeCallbacks(self, executor)
        self._lock = threading.Condition(threading.RLock())
        self._stopped = threading.Event()
        self._stop_reason: str | None = None
        self._subscribed = False
        self._ever_subscribed = False
        self._disconnected_at = time.monotonic()
        self._last_attempt: dict[uuid.UUID, float] = {}
        self._shutdown_called = False
        self._watchdog: threading.Thread | None = None
        self._impl = _PatchedPyMesos(self, http_timeout)

    # -- interface -------------------------------------------------------------------------------
    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    @property
    def connected(self) -> bool:
        return self._subscribed

    def start(self) -> None:
        self._install_sigint_handler()
        self._impl.start()
        self._watchdog = threading.Thread(target=self._watch, name="driver-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self, reason: str = "stopped by the executor") -> None:
        with self._lock:
            if self._stop_reason is not None:
                return
            self._stop_reason = reason
            self._lock.notify_all()
        log.info("Driver stopping: %s", reason)
        self._impl.stop()
        self._stopped.set()

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.is_set():
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                return False
            self._stopped.wait(left)
        self._impl.join_io(timeout=5.0)
        return True

    def send_status_update(self, task_id: str, state: str, message: str | None = None,
                           data: bytes | None = None, healthy: bool | None = None,
                           reason: str | None = None) -> str:
        if state not in SENDABLE_STATES:
            raise ValueError("an executor cannot send %s" % state)
        status: dict[str, Any] = {
            "task_id": {"value": task_id}, "state": state, "source": "SOURCE_EXECUTOR",
            "executor_id": {"value": self.env.executor_id}, "timestamp": time.time(),
            "uuid": encode_data(uuid.uuid4().bytes),
        }
        if self.env.agent_id:
            status["agent_id"] = {"value": self.env.agent_id}
        if message:
            status["message"] = message
        if data is not None:
            status["data"] = encode_data(data)
        if healthy is not None:
            status["healthy"] = healthy
        if reason:
            status["reason"] = reason
        key = uuid.UUID(bytes=decode_data(status["uuid"]))
        with self._lock:
            # Fix: pymesos never recorded updates, so none survived a reconnect.
            self._impl.updates[key] = {"status": status}
        log.info("Status update %s for %s%s", state, task_id, (": " + message) if message else "")
        self._try_send(key)
        return status["uuid"]

    def send_framework_message(self, data: bytes) -> None:
        try:
            self._impl.sendFrameworkMessage(encode_data(data))
        except Exception as e:  # noqa: BLE001 - best effort by contract
            log.warning("Framework message dropped: %s", e)

    def wait_acknowledged(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._impl.updates:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop_reason is not None:
                    return False
                self._lock.wait(min(left, 0.5))
            return True

    def unacknowledged(self) -> list[dict[str, Any]]:
        """The statuses still waiting for an acknowledgement, oldest first (for tests and logs)."""
        with self._lock:
            return sorted((u["status"] for u in self._impl.updates.values()),
                          key=lambda s: s["timestamp"])

    # -- internals ---------------------------------------------------------------------------------
    def _try_send(self, key: uuid.UUID) -> None:
        with self._lock:
            update = self._impl.updates.get(key)
            self._last_attempt[key] = time.monotonic()
        if update is None or not self._subscribed:
            return
        body = {"type": "UPDATE", "executor_id": self._impl.executor_id,
                "framework_id": self._impl.framework_id, "update": update}
        for attempt in (1, 2):  # a keep-alive connection closed by the agent fails exactly once
            try:
                self._impl._send(body)
                return
            except Exception as e:  # noqa: BLE001 - kept and re-sent later
                if attempt == 2 or "code=" in str(e):
                    log.info("Update %s not delivered yet (%s); will re-send",
                             update["status"]["state"], e)
                    return

    def _acknowledged(self, key: uuid.UUID) -> None:
        with self._lock:
            self._last_attempt.pop(key, None)
            self._lock.notify_all()

    def _on_subscribed(self) -> None:
        with self._lock:
            self._subscribed = True
            self._ever_subscribed = True
            self._lock.notify_all()

    def _on_close(self) -> bool:
        """A connection ended; returns whether the driver should back off before the next attempt."""
        with self._lock:
            if self._stop_reason is not None:
                return False
            was_subscribed, self._subscribed = self._subscribed, False
            if was_subscribed:
                self._disconnected_at = time.monotonic()
        if was_subscribed:
            log.warning("Lost the agent's event stream")
            self._callbacks.call("disconnected")
        if not self.env.checkpoint:
            self._give_up("disconnected from the agent and checkpointing is off")
            return False
        return not was_subscribed

    def _give_up(self, reason: str) -> None:
        """Stop talking to the agent and tell the executor to shut its tasks down (once)."""
        with self._lock:
            if self._stop_reason is not None:
                return
            self._stop_reason = reason
            first, self._shutdown_called = not self._shutdown_called, True
            self._lock.notify_all()
        log.warning("Giving up on the agent: %s", reason)
        self._impl.stop()
        if first:
            self._callbacks.call("shutdown")
        self._stopped.set()

    def _backoff(self) -> float:
        # Fix: bounded by MESOS_SUBSCRIPTION_BACKOFF_MAX (pymesos: up to 15 s), random like the C++
        # library's, but within half of it so that at least two attempts fall in the agent's window.
        return random.uniform(0.05, max(0.05, self.env.subscription_backoff_max / 2))

    def _sleep(self, seconds: float) -> None:
        self._stopped.wait(seconds)

    def _watch(self) -> None:
        """Recovery timeout, restart of a dead IO thread, and periodic re-sends."""
        while not self._stopped.wait(self.WATCH_INTERVAL):
            now = time.monotonic()
            with self._lock:
                subscribed = self._subscribed
                away = now - self._disconnected_at
                due = [k for k in self._impl.updates
                       if now - self._last_attempt.get(k, 0.0) >= self.RESEND_AFTER]
            if not subscribed and away > self.env.recovery_timeout:
                self._give_up("the agent did not come back within the recovery timeout (%.0fs)"
                              % self.env.recovery_timeout)
                return
            if not self._impl.io_alive():
                self._sleep(self._backoff())
                if self._stop_reason is None:
                    log.info("Restarting the agent connection")
                    self._impl.start()
                continue
            if subscribed:
                for key in due:
                    self._try_send(key)

    def _install_sigint_handler(self) -> None:
        """pymesos hands IO-thread exceptions to the main thread through SIGINT (interrupt_main),
        which would raise them anywhere. Take them here instead: log them; the watchdog reconnects."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: Any) -> None:
            exc_info = _pprocess._exc_info
            if exc_info is not None:
                _pprocess._exc_info = None
                log.error("Agent connection failed: %s", exc_info[1])
                return
            if previous is signal.SIG_IGN:
                return
            if callable(previous) and previous is not _pprocess._handle_sigint:
                previous(signum, frame)
                return
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_sigint)


class _PatchedPyMesos(_PyMesosExecutorDriver):
    """pymesos' driver with the protocol fixes; everything executor-facing goes through the owner."""

    def __init__(self, owner: PyMesosDriver, http_timeout: float) -> None:
        env = owner.env
        saved = dict(os.environ)
        os.environ.update({"MESOS_AGENT_ENDPOINT": env.agent_endpoint,
                           "MESOS_FRAMEWORK_ID": env.framework_id, "MESOS_EXECUTOR_ID": env.executor_id})
        try:
            super().__init__(executor=None, use_addict=False, http_timeout=http_timeout)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self._owner = owner
        self._launched: set[str] = set()  # pymesos forgets a task once acknowledged
        self.checkpoint = env.checkpoint  # Fix: "0" means off.
        self.local = True  # never os.killpg(0, SIGKILL): pymesos' _delay_kill is not reached either
        self.grace_shutdown_period = env.shutdown_grace_period

    def io_alive(self) -> bool:
        thread = self._io_thread
        return thread is not None and thread.is_alive()

    def join_io(self, timeout: float) -> None:
        thread = self._io_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def start(self) -> None:
        with self._lock:
            if self._io_thread is not None and not self._io_thread.is_alive():
                self._io_thread = None  # a dead IO thread: start afresh (the stored tasks are kept)
        super().start()

    def _backoff(self, num_conn_retry: int) -> float:
        return 0.0  # on_close backs off instead, for failed connects and refused SUBSCRIBEs alike

    def _delay_kill(self) -> None:
        log.debug("pymesos' killpg(0, SIGKILL) suppressed")

    def process_event(self, event: dict[str, Any]) -> None:
        if not self._started:
            return
        try:
            self.on_event(event)
        except Exception:
            log.exception("Could not handle agent event %s; ignored", event.get("type"))

    def on_subscribed(self, info: dict[str, Any]) -> None:
        if info["executor_info"]["executor_id"] != self.executor_id or \
                info["framework_info"]["id"] != self.framework_id:
            log.error("SUBSCRIBED for another executor or framework; ignored")
            return
        first = self.executor_info is None
        self.executor_info = info["executor_info"]
        self.framework_info = info["framework_info"]
        self._owner._on_subscribed()
        if first:
            self._owner._callbacks.call("registered", info["executor_info"], info["framework_info"],
                                        info.get("agent_info", {}))
        else:
            self._owner._callbacks.call("reregistered", info.get("agent_info", {}))

    def on_launch(self, event: dict[str, Any]) -> None:
        task = event["task"]
        task_id = task["task_id"]["value"]
        if task_id in self._launched:
            log.warning("LAUNCH of task %s again; ignored", task_id)
            return
        self._launched.add(task_id)
        self.tasks[task_id] = task
        self._owner._callbacks.call("launchTask", task)

    def on_launch_group(self, event: dict[str, Any]) -> None:
        for task in event["task_group"].get("tasks", []):
            self.on_launch({"task": task})

    def on_kill(self, event: dict[str, Any]) -> None:
        self._owner._callbacks.call("killTask", event["task_id"]["value"])

    def on_acknowledged(self, event: dict[str, Any]) -> None:
        key = uuid.UUID(bytes=decode_data(event["uuid"]))
        with self._owner._lock:
            self.updates.pop(key, None)
            self.tasks.pop(event["task_id"]["value"], None)
        self._owner._acknowledged(key)

    def on_message(self, event: dict[str, Any]) -> None:
        self._owner._callbacks.call("frameworkMessage", decode_data(event["data"]))

    def on_error(self, event: dict[str, Any]) -> None:
        self._owner._callbacks.call("error", event.get("message", ""))

    def on_shutdown(self) -> None:
        # Fix: no killpg and no abort: the executor kills its tasks, sends their terminal updates,
        # waits for the acknowledgements and then stops the driver itself.
        with self._owner._lock:
            first, self._owner._shutdown_called = not self._owner._shutdown_called, True
        if first:
            self._owner._callbacks.call("shutdown")

    def on_close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        backoff = self._owner._on_close()
        if backoff:
            # Fix: a refused connect or a 503 used to be retried at once, in a busy loop.
            self._owner._sleep(self._owner._backoff())

    def gen_request(self) -> bytes:
        with self._owner._lock:
            return super().gen_request()
