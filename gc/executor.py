"""gc_executor: the Mesos executor that reconciles a host's tasks with the scheduler and reclaims them.

The scheduler launches it as a `system-gc-<uuid>` task whose data is an Aurora `AdjustRetainedTasks`
(every task the scheduler believes is on this host, with its status); the same struct is accepted
as a framework message. One worker thread runs at most one GC at a time, with at most one request
queued behind it (a newer request replaces the queued one, which is answered TASK_FINISHED
"skipped"). A GC pass scans every checkpoint root, asks `decide` what to do, and then kills
unwanted live tasks through the core's kill path, marks dead runners' tasks LOST, reports
finished or vanished tasks to the scheduler, and deletes finished tasks nobody retains.
Between requests it marks LOST the tasks whose runner died (Aurora's `clean_orphans`), and it
ends itself after `--idle-timeout` without a request or `--max-lifetime` in all.

Fixed against Aurora's (spec executor.md §5):
* a task is live only if its runner is (lock held or pid verified), so a healthy runner is never
  taken for an orphan and a stale ACTIVE checkpoint never for a live task;
* deletion never follows a symlink and never touches a Mesos run without `executor.sentinel`;
* killTask of a queued GC answers TASK_KILLED (upstream left it unanswered, looking up the TaskID
  object among string keys);
* a framework message is a GC request too, and bad data is one log line, not a crash.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from thermos.gc import retained as retained_wire
from thermos.gc.decide import GcPolicy, Plan, absent_updates, decide, decide_orphans
from thermos.gc.detect import HostScanner, iter_roots
from thermos.gc.reclaim import collect_task, kill_task
from thermos.gc.retained import TERMINAL_STATES, BadRequest
from thermos.gc.task_files import mesos_run_of

from thermos.common.constants import DEFAULT_CHECKPOINT_ROOT, DEFAULT_SANDBOX_ROOT
from thermos.gen.thermos.ttypes import TaskState

log = logging.getLogger("gc_executor")

POLL_WAIT = 5 * 60.0  # between orphan checks
IDLE_TIMEOUT = 60 * 60.0
MAXIMUM_EXECUTOR_LIFETIME = 24 * 60 * 60.0
ACK_WAIT = 10.0

FINISHED = "Garbage collection finished."
SKIPPED_NEWER = "Garbage collection skipped - GC executor received another task"
SKIPPED_SHUTDOWN = "Garbage collection skipped - GC executor shutting down"
SHUTTING_DOWN = "GC Executor is shutting down."
UNDECODABLE = "Deserialization of GC task failed"
KILLED_QUEUED = "Garbage collection task killed before it ran."


def decode_retained(data: bytes) -> dict[str, int]:
    return retained_wire.decode(data)


def encode_retained(retained: dict[str, int]) -> bytes:
    return retained_wire.encode(retained)


@dataclass
class GcRequest:
    task_id: str | None  # None for a framework message
    retained: dict[str, int]
    received: float


class GcExecutor:
    """The driver callbacks (`thermos.executor.driver.Executor`'s) and the worker loop."""

    def __init__(self, scanner: HostScanner, policy: GcPolicy | None = None,
                 idle_timeout: float = IDLE_TIMEOUT, max_lifetime: float = MAXIMUM_EXECUTOR_LIFETIME,
                 poll_wait: float = POLL_WAIT, sandbox_roots: Sequence[str] | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._scanner = scanner
        self._policy = policy or GcPolicy()
        self._idle_timeout = idle_timeout
        self._max_lifetime = max_lifetime
        self._poll_wait = poll_wait
        self._sandbox_roots = sandbox_roots
        self._clock = clock
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._queue: list[GcRequest] = []
        self._running: str | None = None
        self._stopping = False
        self._last_retained: dict[str, int] | None = None
        self.dropped_tasks = 0
        self.exit_reason: str | None = None

    # ---- driver callbacks (on the driver's thread: quick) ---------------------------------

    def registered(self, driver: Any, executor_info: dict[str, Any], framework_info: dict[str, Any],
                   agent_info: dict[str, Any]) -> None:
        log.info("Registered with agent %s", agent_info.get("hostname", "?"))

    def reregistered(self, driver: Any, agent_info: dict[str, Any]) -> None:
        log.info("Re-registered with agent %s", agent_info.get("hostname", "?"))

    def disconnected(self, driver: Any) -> None:
        log.info("Disconnected from the agent")

    def error(self, driver: Any, message: str) -> None:
        log.error("Agent reported an error: %s", message)

    def launchTask(self, driver: Any, task: dict[str, Any]) -> None:  # noqa: N802
        from thermos.executor.driver import decode_data

        task_id = task["task_id"]["value"]
        with self._cond:
            if self._stopping:
                driver.send_status_update(task_id, "TASK_FAILED", SHUTTING_DOWN)
                return
            if task_id == self._running or any(r.task_id == task_id for r in self._queue):
                log.warning("Ignoring a second launch of %s", task_id)
                return
        try:
            retained = decode_retained(decode_data(task.get("data") or ""))
        except (BadRequest, ValueError) as err:
            log.error("Task %s: %s", task_id, err)
            driver.send_status_update(task_id, "TASK_FAILED", UNDECODABLE)
            return
        self._enqueue(driver, GcRequest(task_id, retained, self._clock()))

    def frameworkMessage(self, driver: Any, message: bytes) -> None:  # noqa: N802
        try:
            retained = decode_retained(message)
        except BadRequest as err:
            log.error("Ignoring a framework message (%d bytes): %s", len(message), err)
            return
        with self._cond:
            if self._stopping:
                log.warning("Ignoring a GC framework message: shutting down")
                return
        self._enqueue(driver, GcRequest(None, retained, self._clock()))

    def _enqueue(self, driver: Any, request: GcRequest) -> None:
        with self._cond:
            dropped = self._queue[:]
            self._queue[:] = [request]
            self.dropped_tasks = self.dropped_tasks + len(dropped) if dropped else 0
            self._cond.notify_all()
        for old in dropped:
            log.info("Dropping queued GC %s for %s", old.task_id or "(framework message)",
                     request.task_id or "a framework message")
            if old.task_id is not None:
                driver.send_status_update(old.task_id, "TASK_FINISHED", SKIPPED_NEWER)

    def killTask(self, driver: Any, task_id: str) -> None:  # noqa: N802
        with self._cond:
            queued = [r for r in self._queue if r.task_id == task_id]
            self._queue[:] = [r for r in self._queue if r.task_id != task_id]
            running = self._running == task_id
        if queued:
            driver.send_status_update(task_id, "TASK_KILLED", KILLED_QUEUED)
        elif running:
            log.info("Kill of the running GC %s: it completes first", task_id)
        else:
            log.info("Kill of unknown task %s ignored", task_id)

    def shutdown(self, driver: Any) -> None:
        log.info("Shutdown requested")
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    # ---- the worker -------------------------------------------------------------------------

    def run(self, driver: Any) -> None:
        """Serve GC requests until shut down, idle for too long or too old; then stop the driver."""
        started = last_activity = last_poll = self._monotonic()
        while True:
            request = None
            with self._cond:
                now = self._monotonic()
                wait = min(self._poll_wait - (now - last_poll), self._idle_timeout - (now - last_activity),
                           self._max_lifetime - (now - started))
                if not self._queue and not self._stopping and wait > 0:
                    self._cond.wait(wait)
                if self._stopping:
                    self.exit_reason = "shut down by the agent"
                    break
                if self._queue:
                    request = self._queue.pop(0)
                    self._running = request.task_id or "(framework message)"
            if request is not None:
                try:
                    self.run_gc(driver, request)
                finally:
                    with self._cond:
                        self._running = None
                last_activity = self._monotonic()
                continue
            now = self._monotonic()
            if now - started >= self._max_lifetime:
                self.exit_reason = "reached the maximum lifetime of %.0f s" % self._max_lifetime
                break
            if now - last_activity >= self._idle_timeout:
                self.exit_reason = "idle for %.0f s" % self._idle_timeout
                break
            if now - last_poll >= self._poll_wait:
                self.clean_orphans(driver)
                last_poll = self._monotonic()
        self._finish(driver)

    def _finish(self, driver: Any) -> None:
        with self._cond:
            self._stopping = True
            left, self._queue[:] = self._queue[:], []
        log.info("GC executor exiting: %s", self.exit_reason)
        for request in left:
            if request.task_id is not None:
                driver.send_status_update(request.task_id, "TASK_FINISHED", SKIPPED_SHUTDOWN)
        driver.wait_acknowledged(ACK_WAIT)
        driver.stop()

    def run_gc(self, driver: Any, request: GcRequest) -> None:
        """One GC pass, in batches of tasks (each task is decided on its own; memory stays flat)."""
        live = {task_id for task_id, status in request.retained.items() if status not in TERMINAL_STATES}
        seen: set[str] = set()
        counts = dict.fromkeys(("kill", "lose", "delete", "updates", "skipped"), 0)
        now = self._clock()
        for batch in self._scanner.scan_batches(states_for=live):
            seen.update(task.task_id for task in batch if task.task_id in request.retained)
            plan = decide(batch, request.retained, self._policy, now, report_absent=False)
            self._carry_out(driver, plan)
            for name in counts:
                counts[name] += len(getattr(plan, name))
        absent = Plan(updates=absent_updates(seen, request.retained))
        self._carry_out(driver, absent)
        counts["updates"] += len(absent.updates)
        log.info("GC %s: %d retained: %s", request.task_id or "(framework message)", len(request.retained),
                 ", ".join("%s %d" % item for item in counts.items()))
        self._last_retained = request.retained
        if request.task_id is not None:
            driver.send_status_update(request.task_id, "TASK_FINISHED", FINISHED)

    def clean_orphans(self, driver: Any) -> Plan:
        plan = decide_orphans(self._scanner.scan(), self._last_retained, self._policy, self._clock())
        if plan.lose:
            self._carry_out(driver, plan)
        return plan

    def _carry_out(self, driver: Any, plan: Plan) -> None:
        for task in plan.kill:
            log.info(kill_task(task, TaskState.KILLED).line)
        for task in plan.lose:
            log.info(kill_task(task, TaskState.LOST).line)
        for update in plan.updates:
            driver.send_status_update(update.task_id, update.mesos_state, update.message)
        for task, why in plan.skipped:
            log.info("skip: %s in %s: %s", task.task_id, task.root, why)
        for task in plan.delete:
            log.info(collect_task(task, self._sandbox_roots).line)


# ---- the command ---------------------------------------------------------------------------


def _duration(text: str) -> float:
    from thermos.cli.commands.gc import parse_time

    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a duration like 10m, 1h or 600s, got %r" % text) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gc_executor", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", dest="roots", action="append", metavar="PATH",
                   help="a fixed checkpoint root (repeatable; default %s)" % DEFAULT_CHECKPOINT_ROOT)
    p.add_argument("--mesos-root", metavar="PATH",
                   help="the agent's work_dir (default: found above MESOS_DIRECTORY; '' for none)")
    p.add_argument("--sandbox-root", dest="sandbox_roots", action="append", metavar="PATH", default=[],
                   help="a directory holding sandboxes, reached through symlinks in its own path")
    p.add_argument("--minimum-kill-age", type=_duration, default=GcPolicy.minimum_kill_age, metavar="AGE",
                   help="never kill a task younger than this (default 10m)")
    p.add_argument("--orphan-age", type=_duration, default=GcPolicy.orphan_age, metavar="AGE",
                   help="a dead runner's checkpoint must be this still before its task is LOST (default 1h)")
    p.add_argument("--idle-timeout", type=_duration, default=IDLE_TIMEOUT, metavar="AGE",
                   help="exit after this long without a GC request (default 1h)")
    p.add_argument("--max-lifetime", type=_duration, default=MAXIMUM_EXECUTOR_LIFETIME, metavar="AGE",
                   help="exit after this long in all (default 1d)")
    p.add_argument("--poll-interval", type=_duration, default=POLL_WAIT, metavar="AGE",
                   help="time between checks for dead runners (default 5m)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from thermos.executor.driver import MesosEnvironment, PyMesosDriver

    try:
        env = MesosEnvironment.from_env()
    except MesosEnvironment.Error as err:
        print("gc_executor: error: %s" % str(err).replace("thermos_executor", "gc_executor"), file=sys.stderr)
        return 1
    mesos_root = args.mesos_root
    if mesos_root is None:
        run = mesos_run_of(os.path.abspath(env.directory))
        mesos_root = run.work_dir if run is not None else ""
    roots = args.roots or [DEFAULT_CHECKPOINT_ROOT]
    sandbox_roots = (DEFAULT_SANDBOX_ROOT, *args.sandbox_roots)
    policy = GcPolicy(minimum_kill_age=args.minimum_kill_age, orphan_age=args.orphan_age)
    scanner = HostScanner(lambda: iter_roots(roots, [mesos_root] if mesos_root else []), sandbox_roots)
    executor = GcExecutor(scanner, policy, idle_timeout=args.idle_timeout, max_lifetime=args.max_lifetime,
                          poll_wait=args.poll_interval, sandbox_roots=sandbox_roots)
    log.info("gc_executor: roots %s, Mesos work_dir %s", ", ".join(roots), mesos_root or "(none)")
    driver = PyMesosDriver(executor)  # type: ignore[arg-type]
    worker = threading.Thread(target=executor.run, args=(driver,), name="gc-worker", daemon=True)
    driver.start()
    worker.start()
    driver.join()
    if driver.stop_reason and executor.exit_reason is None:
        log.info("Driver stopped: %s", driver.stop_reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
