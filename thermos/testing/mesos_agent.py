"""A stand-in Mesos agent speaking the real v1 executor HTTP API, for tests and `./dev demo`.

No package provides one, so this is written from the protocol (Mesos' executor-http-api docs and the
agent's validation code): `POST /api/v1/executor` with JSON bodies; SUBSCRIBE answered by a chunked
200 stream of RecordIO-framed events (`<length>\\n<json>`); UPDATE and MESSAGE on other connections,
answered 202; ACKNOWLEDGED as soon as an update is recorded; the status codes of the agent's
validation (400/403/405/406/415/501, and 503 while recovering); a restart with a re-registration
window; executors started as `sh -c <command>` in their own session, in a run directory laid out like
a real agent's work_dir, with the environment a real agent sets.

Standard library only (no pytest): tests drive it through `MesosAgent`, the demo too.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

TERMINAL = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR",
                      "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"})
TASK_STATES = frozenset({"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_UNREACHABLE",
                         "TASK_UNKNOWN"}) | TERMINAL
CALL_TYPES = ("SUBSCRIBE", "UPDATE", "MESSAGE", "HEARTBEAT")
_END = object()  # queued on a stream: cut it like a dying agent (no final chunk)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class Update:
    """A status update as the agent recorded it (agent-generated ones have source SOURCE_AGENT)."""

    task_id: str
    state: str
    message: str | None
    source: str
    reason: str | None
    uuid: str | None
    status: dict[str, Any]
    received: float = field(default_factory=time.monotonic)


@dataclass
class TaskRecord:
    info: dict[str, Any]
    state: str = "TASK_STAGING"
    sent: bool = False  # LAUNCH delivered to the executor


@dataclass
class ExecutorRun:
    """One executor the agent launched: its process, directories, stream and tasks."""

    executor_id: str
    framework_id: str
    container_id: str
    directory: str
    meta_dir: str
    command: str
    checkpoint: bool
    shutdown_grace_period: float
    proc: subprocess.Popen[bytes] | None = None
    stream: queue.Queue[Any] | None = None
    subscribed: bool = False
    resubscribed_since_recovery: bool = False
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    subscribes: list[dict[str, Any]] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    exit_code: int | None = None
    destroyed: bool = False

    @property
    def sandbox(self) -> str:
        return self.directory

    def log_text(self, name: str = "stderr") -> str:
        try:
            with open(os.path.join(self.directory, name), errors="replace") as fp:
                return fp.read()
        except OSError:
            return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], agent: MesosAgent) -> None:
        self.agent = agent
        self.sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.sockets.discard(request)
        super().shutdown_request(request)

    def cut_all(self) -> None:
        """Drop every accepted connection, as a dying agent does (idle keep-alives included)."""
        with self.sockets_lock:
            sockets = list(self.sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("agent http: " + format, *args)

    def _reply(self, code: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        if data:
            self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._reply(405, "Expecting a 'POST' request")

    do_PUT = do_DELETE = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path != "/api/v1/executor":
            self._reply(404)
            return
        agent = self.server.agent
        code, text, stream = agent._handle_call(dict(self.headers.items()), body)
        if stream is None:
            self._reply(code, text)
            return
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        agent._serve_stream(self, stream)


class MesosAgent:
    """A Mesos agent stand-in on 127.0.0.1 (see the module docstring).

    Typical use: `agent = MesosAgent(work_dir); agent.start(); run = agent.launch_executor(eid, cmd);
    agent.launch_task(eid, task_info(...)); agent.wait_for(lambda: ...); agent.stop()`.
    """

    def __init__(self, work_dir: str, checkpoint: bool = True, recovery_timeout: str = "15mins",
                 reregistration_timeout: float = 2.0, registration_timeout: float = 60.0,
                 framing: str = "one", hostname: str = "localhost", port: int = 0) -> None:
        if framing not in ("one", "split", "coalesce"):
            raise ValueError("framing must be one, split or coalesce")
        self.work_dir = os.path.abspath(work_dir)
        self.checkpoint = checkpoint
        self.recovery_timeout = recovery_timeout
        self.reregistration_timeout = reregistration_timeout
        self.registration_timeout = registration_timeout
        self.framing = framing
        self.hostname = hostname
        self.agent_id = "%s-S0" % uuid.uuid4()
        self.framework_id = "%s-0000" % uuid.uuid4()
        self.ack_mode = "auto"  # auto | manual (held until release_acks) | drop
        self.ack_delay = 0.0
        self.update_status_override: int | None = None  # answer UPDATEs with this code (fault injection)
        self.subscribe_status_override: int | None = None
        self.state = "STOPPED"  # RUNNING | RECOVERING | DOWN | STOPPED
        self.recover_mode = "reconnect"
        self.executors: dict[str, ExecutorRun] = {}
        self.updates: list[Update] = []  # each distinct update once, in the order received
        self.duplicates = 0
        self.violations: list[str] = []  # protocol breaches seen (backwards transitions, bad calls)
        self.calls: list[dict[str, Any]] = []  # every call: {"headers", "body", "code"}
        self._seen_uuids: set[str] = set()
        self._held_acks: list[tuple[ExecutorRun, dict[str, Any]]] = []
        self._cond = threading.Condition(threading.RLock())
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self.port = port
        os.makedirs(self.work_dir, exist_ok=True)

    # -- lifecycle of the agent itself --------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return "127.0.0.1:%d" % self.port

    def start(self) -> None:
        self._bind()
        self._write_meta_agent()
        with self._cond:
            self.state = "RUNNING"
            self._cond.notify_all()

    def stop(self) -> None:
        """Stop serving and kill every executor still running (their sessions included)."""
        for run in list(self.executors.values()):
            self._destroy(run, "agent stopped", agent_update=False)
        self._unbind()
        with self._cond:
            self.state = "STOPPED"
            self._cond.notify_all()

    def crash(self) -> None:
        """The agent dies: listener and every connection closed; executors keep running."""
        with self._cond:
            self.state = "DOWN"
            for run in self.executors.values():
                self._end_stream(run)
            self._cond.notify_all()
        self._unbind()

    def recover(self, recover: str = "reconnect", reregistration_timeout: float | None = None) -> None:
        """Come back on the same port. `reconnect`: executors may re-subscribe (UPDATE/MESSAGE get 503
        until then) within the re-registration timeout, after which the others are destroyed and their
        tasks marked LOST. `cleanup`: every call gets 503 and old executors are destroyed. Without
        checkpointing the agent has forgotten its executors (their calls get 400)."""
        timeout = self.reregistration_timeout if reregistration_timeout is None else reregistration_timeout
        with self._cond:
            self.recover_mode = recover
            self.state = "RECOVERING"
            for run in self.executors.values():
                run.resubscribed_since_recovery = False
                if not run.checkpoint:
                    run.destroyed = True
            self._cond.notify_all()
        self._bind()
        _timer(timeout, self._finish_recovery)

    def restart(self, down_for: float = 0.0, recover: str = "reconnect",
                reregistration_timeout: float | None = None) -> None:
        """crash(), stay down for `down_for` seconds (the outage being simulated), recover()."""
        self.crash()
        threading.Event().wait(down_for)
        self.recover(recover, reregistration_timeout)

    def _finish_recovery(self) -> None:
        with self._cond:
            if self.state != "RECOVERING":
                return
            stale = [run for run in self.executors.values()
                     if run.exit_code is None and not run.destroyed
                     and (self.recover_mode == "cleanup" or not run.resubscribed_since_recovery)]
        for run in stale:
            self._destroy(run, "Executor did not re-register within %ss" % self.reregistration_timeout,
                          state="TASK_LOST", reason="REASON_EXECUTOR_REREGISTRATION_TIMEOUT")
        with self._cond:
            self.state = "RUNNING"
            self._cond.notify_all()

    def _bind(self) -> None:
        server = _Server(("127.0.0.1", self.port), self)
        self.port = server.server_address[1]
        self._server = server
        self._server_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                               name="mesos-agent-http", daemon=True)
        self._server_thread.start()

    def _unbind(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.cut_all()
        server.server_close()

    # -- executors -----------------------------------------------------------------------------------
    def launch_executor(self, executor_id: str, command: str, env: dict[str, str] | None = None,
                        checkpoint: bool | None = None, shutdown_grace_period: float = 5.0,
                        framework_id: str | None = None) -> ExecutorRun:
        """Create the run directory and start `sh -c <command>` in a new session, cwd = sandbox."""
        fid = framework_id or self.framework_id
        cid = str(uuid.uuid4())
        checkpoint = self.checkpoint if checkpoint is None else checkpoint
        runs = os.path.join(self.work_dir, "slaves", self.agent_id, "frameworks", fid, "executors",
                            executor_id, "runs")
        directory = os.path.join(runs, cid)
        meta_runs = os.path.join(self.work_dir, "meta", "slaves", self.agent_id, "frameworks", fid,
                                 "executors", executor_id, "runs")
        meta = os.path.join(meta_runs, cid)
        os.makedirs(directory)
        os.makedirs(os.path.join(meta, "pids"))
        for parent in (runs, meta_runs):
            _relink(os.path.join(parent, "latest"), cid)
        framework_meta = os.path.dirname(os.path.dirname(os.path.dirname(meta_runs)))
        _write_json(os.path.join(framework_meta, "framework.info"), {"id": {"value": fid},
                                                                     "checkpoint": checkpoint})
        _write_json(os.path.join(os.path.dirname(meta_runs), "executor.info"),
                    {"executor_id": {"value": executor_id}, "command": {"value": command, "shell": True}})
        run = ExecutorRun(executor_id=executor_id, framework_id=fid, container_id=cid, directory=directory,
                          meta_dir=meta, command=command, checkpoint=checkpoint,
                          shutdown_grace_period=shutdown_grace_period)
        environment = dict(os.environ)
        environment.update({
            "MESOS_FRAMEWORK_ID": fid, "MESOS_EXECUTOR_ID": executor_id,
            "MESOS_DIRECTORY": directory, "MESOS_SANDBOX": directory,
            "MESOS_SLAVE_ID": self.agent_id, "MESOS_SLAVE_PID": "slave(1)@%s" % self.endpoint,
            "MESOS_AGENT_ENDPOINT": self.endpoint,
            "MESOS_CHECKPOINT": "1" if checkpoint else "0", "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "%gsecs" % shutdown_grace_period,
            "LIBPROCESS_PORT": "0",
        })
        if checkpoint:
            environment["MESOS_RECOVERY_TIMEOUT"] = self.recovery_timeout
            environment["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = "%gsecs" % self.reregistration_timeout
        environment.update(env or {})
        with self._cond:
            self.executors[executor_id] = run
        with open(os.path.join(directory, "stdout"), "wb") as out, \
                open(os.path.join(directory, "stderr"), "wb") as err:
            run.proc = subprocess.Popen(["sh", "-c", command], cwd=directory, env=environment, stdout=out,
                                        stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        with open(os.path.join(meta, "pids", "forked.pid"), "w") as fp:
            fp.write(str(run.proc.pid))
        threading.Thread(target=self._reap, args=(run,), name="reap-" + executor_id, daemon=True).start()
        _timer(self.registration_timeout, self._registration_deadline, run)
        return run

    def _registration_deadline(self, run: ExecutorRun) -> None:
        with self._cond:
            late = not run.subscribes and run.exit_code is None and not run.destroyed
        if late:
            self._destroy(run, "Executor did not register within %ss" % self.registration_timeout,
                          state="TASK_FAILED", reason="REASON_EXECUTOR_REGISTRATION_TIMEOUT")

    def _reap(self, run: ExecutorRun) -> None:
        assert run.proc is not None
        code = run.proc.wait()
        open(os.path.join(run.meta_dir, "executor.sentinel"), "w").close()
        with self._cond:
            run.exit_code = code
            self._end_stream(run)
            # A destroyed executor's tasks are failed by _destroy, with its reason.
            leftovers = [] if run.destroyed else [tid for tid, task in run.tasks.items()
                                                  if task.state not in TERMINAL]
            self._cond.notify_all()
        for tid in leftovers:
            self._agent_update(run, tid, "TASK_FAILED", "Executor terminated", "REASON_EXECUTOR_TERMINATED")

    def _destroy(self, run: ExecutorRun, why: str, state: str = "TASK_FAILED",
                 reason: str = "REASON_EXECUTOR_TERMINATED", agent_update: bool = True) -> None:
        """Kill the executor's whole session, as the containerizer does, then fail its live tasks."""
        log.info("Destroying executor %s: %s", run.executor_id, why)
        with self._cond:
            run.destroyed = True
            self._end_stream(run)
            leftovers = [tid for tid, task in run.tasks.items() if task.state not in TERMINAL]
        if run.proc is not None and run.exit_code is None:
            _killpg(run.proc.pid)
            try:
                run.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.error("Executor %s did not die on SIGKILL", run.executor_id)
        if agent_update:
            for tid in leftovers:
                self._agent_update(run, tid, state, why, reason)

    def _agent_update(self, run: ExecutorRun, task_id: str, state: str, message: str, reason: str) -> None:
        with self._cond:
            task = run.tasks.get(task_id)
            if task is None or task.state in TERMINAL:
                return
            status = {"task_id": {"value": task_id}, "state": state, "message": message,
                      "source": "SOURCE_AGENT", "reason": reason, "timestamp": time.time()}
            self._record_update(run, status)

    # -- events to executors ---------------------------------------------------------------------------
    def launch_task(self, executor_id: str, task: dict[str, Any]) -> None:
        """LAUNCH now if the executor is subscribed, else right after its SUBSCRIBED (as Mesos does)."""
        with self._cond:
            run = self.executors[executor_id]
            tid = task["task_id"]["value"]
            run.tasks[tid] = TaskRecord(info=task)
            self._write_task_meta(run, tid, task)
            if run.subscribed:
                run.tasks[tid].sent = True
                self._send(run, {"type": "LAUNCH", "launch": {"task": task}})
            self._cond.notify_all()

    def kill(self, task_id: str, grace_ns: int | None = None) -> None:
        run = self.executor_of(task_id)
        event: dict[str, Any] = {"task_id": {"value": task_id}}
        if grace_ns is not None:
            event["kill_policy"] = {"grace_period": {"nanoseconds": grace_ns}}
        self.send_raw(run.executor_id, {"type": "KILL", "kill": event})

    def message(self, executor_id: str, data: bytes) -> None:
        self.send_raw(executor_id, {"type": "MESSAGE", "message": {"data": _b64(data)}})

    def error(self, executor_id: str, message: str) -> None:
        self.send_raw(executor_id, {"type": "ERROR", "error": {"message": message}})

    def heartbeat(self, executor_id: str) -> None:
        self.send_raw(executor_id, {"type": "HEARTBEAT"})

    def send_raw(self, executor_id: str, event: dict[str, Any]) -> None:
        with self._cond:
            run = self.executors[executor_id]
            if not run.subscribed:
                raise RuntimeError("executor %s is not subscribed" % executor_id)
            self._send(run, event)

    def shutdown(self, executor_id: str) -> None:
        """SHUTDOWN, then after the executor's grace period kill its session if it is still there."""
        run = self.executors[executor_id]
        with self._cond:
            if run.subscribed:
                self._send(run, {"type": "SHUTDOWN"})

        def enforce() -> None:
            assert run.proc is not None
            try:
                run.proc.wait(timeout=run.shutdown_grace_period)
            except subprocess.TimeoutExpired:
                self._destroy(run, "Executor did not exit within its shutdown grace period")

        threading.Thread(target=enforce, name="shutdown-" + executor_id, daemon=True).start()

    def disconnect(self, executor_id: str) -> None:
        """Close the executor's event stream; the agent stays up."""
        with self._cond:
            self._end_stream(self.executors[executor_id])

    def release_acks(self) -> None:
        """Send the acknowledgements held while `ack_mode == 'manual'`."""
        with self._cond:
            held, self._held_acks = self._held_acks, []
            for run, ack in held:
                if run.subscribed:
                    self._send(run, ack)

    # -- observation ------------------------------------------------------------------------------
    def executor_of(self, task_id: str) -> ExecutorRun:
        with self._cond:
            for run in self.executors.values():
                if task_id in run.tasks:
                    return run
        raise KeyError(task_id)

    def task_updates(self, task_id: str) -> list[Update]:
        with self._cond:
            return [u for u in self.updates if u.task_id == task_id]

    def states(self, task_id: str) -> list[str]:
        return [u.state for u in self.task_updates(task_id)]

    def task_state(self, task_id: str) -> str:
        with self._cond:
            return self.executor_of(task_id).tasks[task_id].state

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
        """Wait (bounded) until predicate() is truthy; re-checked whenever the agent's state changes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("agent: timed out after %.0fs waiting for %s" % (timeout, what))
                self._cond.wait(min(left, 0.25))

    def wait_terminal(self, task_id: str, timeout: float) -> Update:
        self.wait_for(lambda: self.task_state(task_id) in TERMINAL, timeout,
                      "a terminal update of " + task_id)
        return self.task_updates(task_id)[-1]

    def wait_exit(self, executor_id: str, timeout: float) -> int:
        run = self.executors[executor_id]
        self.wait_for(lambda: run.exit_code is not None, timeout, "executor %s to exit" % executor_id)
        assert run.exit_code is not None
        return run.exit_code

    def task_info(self, task_id: str, data: bytes, executor_id: str | None = None, name: str = "task",
                  command: str = "", resources: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A v1 TaskInfo as a scheduler sends it (its ExecutorInfo included)."""
        eid = executor_id or "thermos-" + task_id
        return {
            "name": name, "task_id": {"value": task_id}, "agent_id": {"value": self.agent_id},
            "resources": resources or [],
            "executor": {"executor_id": {"value": eid}, "framework_id": {"value": self.framework_id},
                         "name": "AuroraExecutor", "command": {"value": command, "shell": True}},
            "data": _b64(data),
        }

    # -- protocol ------------------------------------------------------------------------------------
    def _handle_call(self, headers: dict[str, str],
                     body: bytes) -> tuple[int, str, queue.Queue[Any] | None]:
        headers = {k.lower(): v for k, v in headers.items()}
        record: dict[str, Any] = {"headers": headers, "body": None, "code": None}
        code, text, stream = self._validate_and_apply(headers, body, record)
        record["code"] = code
        with self._cond:
            self.calls.append(record)
            self._cond.notify_all()
        return code, text, stream

    def _validate_and_apply(self, headers: dict[str, str], body: bytes,
                            record: dict[str, Any]) -> tuple[int, str, queue.Queue[Any] | None]:
        with self._cond:
            if self.state == "RECOVERING" and self.recover_mode == "cleanup":
                return 503, "Agent has not finished recovery", None
        content_type = headers.get("content-type")
        if not content_type:
            return 400, "Expecting 'Content-Type' to be present", None
        if content_type.split(";")[0].strip() != "application/json":
            return 415, "Expecting 'Content-Type' of application/json or application/x-protobuf", None
        try:
            call = json.loads(body)
            if not isinstance(call, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return 400, "Failed to parse body into Call: %s" % e, None
        record["body"] = call
        kind = call.get("type")
        if kind == "HEARTBEAT":
            return 202, "", None
        if kind is None:
            return 400, "Expecting 'type' to be present", None
        if kind == "UNKNOWN":
            return 501, "Received an unexpected UNKNOWN call", None
        if kind not in CALL_TYPES:
            return 400, "Failed to parse body into Call: unknown type %r" % kind, None
        fid = (call.get("framework_id") or {}).get("value")
        eid = (call.get("executor_id") or {}).get("value")
        if not fid or not eid:
            return 400, "Expecting 'executor_id' and 'framework_id' to be present", None
        with self._cond:
            run = self.executors.get(eid)
            if run is None or run.framework_id != fid or run.destroyed or run.exit_code is not None:
                return 400, "Executor %s of framework %s is unknown" % (eid, fid), None
            if kind == "SUBSCRIBE":
                if "subscribe" not in call:
                    return 400, "Expecting 'subscribe' to be present", None
                accept = headers.get("accept", "application/json")
                if not any(a.split(";")[0].strip() in ("application/json", "*/*", "application/*", "")
                           for a in accept.split(",")):
                    return 406, "Expecting 'Accept' to allow application/json", None
                if self.subscribe_status_override:
                    return self.subscribe_status_override, "injected", None
                return 200, "", self._subscribe(run, call["subscribe"], headers)
            if self.state == "RECOVERING":
                return 503, "Agent has not finished recovery", None
            if not run.subscribed:
                return 403, "Executor is not subscribed", None
            if kind == "MESSAGE":
                message = call.get("message")
                if not isinstance(message, dict) or "data" not in message:
                    return 400, "Expecting 'message' to be present", None
                try:
                    run.messages.append(base64.b64decode(message["data"], validate=True))
                except (binascii.Error, TypeError):
                    return 400, "Failed to parse body into Call: bad base64 in message.data", None
                self._cond.notify_all()
                return 202, "", None
            status = (call.get("update") or {}).get("status")
            error = self._invalid_status(run, status)
            if error:
                self.violations.append("UPDATE refused: " + error)
                return 400, error, None
            if self.update_status_override:
                return self.update_status_override, "injected", None
            self._record_update(run, status)
            self._acknowledge(run, status)
            return 202, "", None

    def _invalid_status(self, run: ExecutorRun, status: Any) -> str | None:
        if not isinstance(status, dict):
            return "Expecting 'update.status' to be present"
        if not (status.get("task_id") or {}).get("value"):
            return "Expecting 'status.task_id' to be present"
        state = status.get("state")
        if state not in TASK_STATES:
            return "Unknown task state %r" % state
        if state == "TASK_STAGING":
            return "Received TASK_STAGING from executor"
        try:
            raw = base64.b64decode(status.get("uuid") or "", validate=True)
        except (binascii.Error, TypeError):
            return "Bad base64 in 'status.uuid'"
        if len(raw) != 16:
            return "'status.uuid' is not a valid UUID"
        if status.get("source") != "SOURCE_EXECUTOR":
            return "Received wrong 'status.source' %r" % status.get("source")
        executor = (status.get("executor_id") or {}).get("value")
        if executor is not None and executor != run.executor_id:
            return "ExecutorID in Call and TaskStatus do not match"
        labels = status.get("labels")
        if labels is not None and not (isinstance(labels, dict) and isinstance(labels.get("labels"), list)):
            return "Labels must be {'labels': [...]}"
        if "data" in status:
            try:
                base64.b64decode(status["data"], validate=True)
            except (binascii.Error, TypeError):
                return "Bad base64 in 'status.data'"
        return None

    def _record_update(self, run: ExecutorRun, status: dict[str, Any]) -> None:
        tid = status["task_id"]["value"]
        key = status.get("uuid")
        if key is not None and key in self._seen_uuids:
            self.duplicates += 1
            return
        if key is not None:
            self._seen_uuids.add(key)
        task = run.tasks.get(tid)
        if task is None:
            self.violations.append("update %s for unknown task %s" % (status["state"], tid))
        elif task.state in TERMINAL:
            self.violations.append("update %s after terminal %s for %s" % (status["state"], task.state, tid))
        else:
            task.state = status["state"]
        self.updates.append(Update(task_id=tid, state=status["state"], message=status.get("message"),
                                   source=status.get("source", ""), reason=status.get("reason"), uuid=key,
                                   status=status))
        if run.checkpoint:
            path = os.path.join(run.meta_dir, "tasks", tid, "task.updates")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a") as fp:
                fp.write(json.dumps(status) + "\n")
        self._cond.notify_all()

    def _acknowledge(self, run: ExecutorRun, status: dict[str, Any]) -> None:
        ack = {"type": "ACKNOWLEDGED",
               "acknowledged": {"task_id": status["task_id"], "uuid": status["uuid"]}}
        if self.ack_mode == "drop":
            return
        if self.ack_mode == "manual":
            self._held_acks.append((run, ack))
            return
        if self.ack_delay > 0:
            def later() -> None:
                with self._cond:
                    if run.subscribed:
                        self._send(run, ack)
            _timer(self.ack_delay, later)
            return
        self._send(run, ack)

    def _subscribe(self, run: ExecutorRun, subscribe: dict[str, Any],
                   headers: dict[str, str]) -> queue.Queue[Any]:
        """Replace the stream; re-process unacknowledged updates; SUBSCRIBED; queued LAUNCHes."""
        self._end_stream(run)
        stream: queue.Queue[Any] = queue.Queue()
        run.stream = stream
        run.subscribed = True
        after_recovery = self.state == "RECOVERING"
        run.resubscribed_since_recovery = True
        run.subscribes.append({"headers": headers, "subscribe": subscribe})
        if run.checkpoint:
            open(os.path.join(run.meta_dir, "http.marker"), "w").close()
        resent = []
        for update in subscribe.get("unacknowledged_updates") or []:
            status = update.get("status") if isinstance(update, dict) else None
            if self._invalid_status(run, status) is None:
                assert status is not None
                self._record_update(run, status)
                resent.append(status)
        if after_recovery:
            unacked = {t["task_id"]["value"] for t in subscribe.get("unacknowledged_tasks") or []}
            for tid, task in run.tasks.items():
                if task.state == "TASK_STAGING" and task.sent and tid not in unacked:
                    status = {"task_id": {"value": tid}, "state": "TASK_LOST", "source": "SOURCE_AGENT",
                              "reason": "REASON_AGENT_RESTARTED",
                              "message": "Task launched during agent restart",
                              "timestamp": time.time()}
                    self._record_update(run, status)
        self._send(run, {"type": "SUBSCRIBED", "subscribed": {
            "executor_info": {"executor_id": {"value": run.executor_id},
                              "framework_id": {"value": run.framework_id},
                              "command": {"value": run.command, "shell": True}},
            "framework_info": {"id": {"value": run.framework_id}, "user": "root", "name": "aurora",
                               "checkpoint": run.checkpoint},
            "agent_info": {"hostname": self.hostname, "port": self.port, "id": {"value": self.agent_id}},
            "container_id": {"value": run.container_id}}})
        for status in resent:  # acknowledged after SUBSCRIBED, the stream's first event
            self._acknowledge(run, status)
        for task in run.tasks.values():
            if not task.sent:
                task.sent = True
                self._send(run, {"type": "LAUNCH", "launch": {"task": task.info}})
        self._cond.notify_all()
        return stream

    def _send(self, run: ExecutorRun, event: dict[str, Any]) -> None:
        if run.stream is None:
            log.warning("event %s for %s dropped: no stream", event.get("type"), run.executor_id)
            return
        run.stream.put(event)

    def _end_stream(self, run: ExecutorRun) -> None:
        if run.stream is not None:
            run.stream.put(_END)
        run.stream = None
        run.subscribed = False
        self._cond.notify_all()

    def _serve_stream(self, handler: _Handler, stream: queue.Queue[Any]) -> None:
        out = handler.wfile
        try:
            while True:
                item = stream.get()
                batch = [item]
                if self.framing == "coalesce":
                    while item is not _END:
                        try:
                            item = stream.get_nowait()
                        except queue.Empty:
                            break
                        batch.append(item)
                ended = batch[-1] is _END
                payload = b"".join(_record(event) for event in batch if event is not _END)
                if payload:
                    pieces = [payload[i:i + 7] for i in range(0, len(payload), 7)] \
                        if self.framing == "split" else [payload]
                    for piece in pieces:
                        out.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    out.flush()
                if ended:
                    break
        except OSError:
            pass
        finally:
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)  # cut, no final 0-chunk
            except OSError:
                pass

    # -- work_dir metadata -----------------------------------------------------------------------------
    def _write_meta_agent(self) -> None:
        meta = os.path.join(self.work_dir, "meta")
        os.makedirs(os.path.join(meta, "slaves", self.agent_id), exist_ok=True)
        with open(os.path.join(meta, "boot_id"), "w") as fp:
            fp.write(str(uuid.uuid4()))
        _write_json(os.path.join(meta, "slaves", self.agent_id, "slave.info"),
                    {"id": {"value": self.agent_id}, "hostname": self.hostname})
        _relink(os.path.join(meta, "slaves", "latest"), self.agent_id)
        os.makedirs(os.path.join(self.work_dir, "slaves", self.agent_id), exist_ok=True)
        _relink(os.path.join(self.work_dir, "slaves", "latest"), self.agent_id)

    def _write_task_meta(self, run: ExecutorRun, task_id: str, task: dict[str, Any]) -> None:
        if run.checkpoint:
            _write_json(os.path.join(run.meta_dir, "tasks", task_id, "task.info"), task)

    def remove_work_dir(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _record(event: dict[str, Any]) -> bytes:
    data = json.dumps(event).encode()
    return b"%d\n%s" % (len(data), data)


def _relink(link: str, target: str) -> None:
    os.makedirs(os.path.dirname(link), exist_ok=True)
    tmp = link + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _write_json(path: str, value: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fp:
        json.dump(value, fp)


def _timer(delay: float, function: Callable[..., None], *args: Any) -> None:
    timer = threading.Timer(delay, function, args=args)
    timer.daemon = True
    timer.start()


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
