"""The seed's user code (shared/seed/checkpoint_dispatcher_usage.txt), ported to `thermos.` imports.

Each function below is the seed's, changed only where Python 3 requires it (print(), binary file
modes) or where it called twitter.common helpers; they run against tasks really run by
thermos_runner and must print what the seed expects.
"""

from __future__ import annotations

import os
import pprint
import pwd
import sys
import threading
import time
from collections import deque
from types import SimpleNamespace

from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.path import TaskPath
from thermos.common.recordio import RecordIO, ThriftRecordReader
from thermos.core.inspector import CheckpointInspector
from thermos.gen.thermos.ttypes import ProcessState, RunnerCkpt, RunnerState, TaskState
from thermos.monitoring.detector import TaskDetector
from thermos.monitoring.monitor import TaskMonitor

# ---- the seed's code ------------------------------------------------------------------------


def read(args, options):
    """Replay a thermos checkpoint."""
    dispatcher = CheckpointDispatcher()
    state = RunnerState(processes={})
    with open(args[0], "rb") as fp:
        try:
            for record in ThriftRecordReader(fp, RunnerCkpt):
                if not options.simple:
                    dispatcher.dispatch(state, record)
                else:
                    print("CKPT: %s" % record)
        except RecordIO.Error as err:
            print("Failed to recover from %s: %s" % (fp.name, err))
            return
    if not options.simple:
        if state is None or state.header is None:
            print("Checkpoint stream CORRUPT or outdated format")
            return
        print("Recovered Task Header:")
        print("  id:      %s" % state.header.task_id)
        print("  user:    %s" % state.header.user)
        print("  host:    %s" % state.header.hostname)
        print("  sandbox: %s" % state.header.sandbox)
        if state.header.ports:
            print("  ports:   %s" % " ".join(
                "%s->%s" % (name, port) for (name, port) in state.header.ports.items()))
        print("Recovered Task States:")
        for task_status in state.statuses:
            print("  %s [pid: %d] => %s" % (
                time.asctime(time.localtime(task_status.timestamp_ms / 1000.0)),
                task_status.runner_pid, TaskState._VALUES_TO_NAMES[task_status.state]))
        print("Recovered Processes:")
        for process, process_history in state.processes.items():
            print("  %s   runs: %s" % (process, len(process_history)))
            for k in reversed(range(len(process_history))):
                run = process_history[k]
                print("    %2d: pid=%d, rc=%s, finish:%s, state:%s" % (
                    k, run.pid, run.return_code if run.return_code is not None else "",
                    time.asctime(time.localtime(run.stop_time)) if run.stop_time else "None",
                    ProcessState._VALUES_TO_NAMES.get(run.state, "Unknown")))


class Observer:
    """The seed's get_states/get_sandbox live on an object with a `_runner_ckpt(task)` helper."""

    def __init__(self, root):
        self._root = root

    def _runner_ckpt(self, task_id):
        return TaskPath(root=self._root, task_id=task_id).getpath("runner_checkpoint")

    def get_states(self, task_id):
        """Returns the (timestamp, status) tuples of the task or [] if could not replay."""
        statuses = CheckpointDispatcher.iter_statuses(self._runner_ckpt(task_id))
        try:
            return [(state.timestamp_ms / 1000.0, state.state) for state in statuses]
        except CheckpointDispatcher.ErrorRecoveringState:
            return []

    def get_sandbox(self, task_id):
        """Returns the sandbox of the task, or None if it has not yet been initialized."""
        try:
            for update in CheckpointDispatcher.iter_updates(self._runner_ckpt(task_id)):
                if update.runner_header and update.runner_header.sandbox:
                    return update.runner_header.sandbox
        except CheckpointDispatcher.ErrorRecoveringState:
            return None


def tail_closed(filename, lines=10):  # twitter.common.dirutil.tail
    with open(filename) as fp:
        return list(deque(fp, maxlen=lines))


def tail(args, options):
    """Tail the logs of a task process (the terminal-log branch of the seed's tail)."""
    task_id = args[0]
    detector = TaskDetector(root=options.root)
    checkpoint = CheckpointDispatcher.from_file(detector.get_checkpoint(task_id))
    log_dir = checkpoint.header.log_dir
    process_runs = [(process, run) for (process, run) in detector.get_process_runs(task_id, log_dir)]
    if len(args) == 2:
        process_runs = [(process, run) for (process, run) in process_runs if process == args[1]]
    if len(process_runs) == 0:
        print("ERROR: No processes found.", file=sys.stderr)
        sys.exit(1)
    processes = set([process for process, _ in process_runs])
    if len(processes) != 1:
        print("ERROR: More than one process matches query.", file=sys.stderr)
        sys.exit(1)
    process = processes.pop()
    run = max([run for _, run in process_runs])
    logdir = TaskPath(root=options.root, task_id=args[0], process=process, run=run,
                      log_dir=log_dir).getpath("process_logdir")
    logfile = os.path.join(logdir, "stderr" if options.use_stderr else "stdout")
    monitor = TaskMonitor(TaskPath(root=options.root), args[0])

    def log_is_active():
        active_processes = monitor.get_active_processes()
        for process_status, process_run in active_processes:
            if process_status.process == process and process_run == run:
                return True
        return False

    if not log_is_active():
        print("Tail of terminal log %s" % logfile)
        for line in tail_closed(logfile):
            print(line.rstrip())
        return
    print("Tail of active log %s" % logfile)


def format_task(detector, task_id, options):
    checkpoint_filename = detector.get_checkpoint(task_id)
    checkpoint_stat = os.stat(checkpoint_filename)
    try:
        checkpoint_owner = pwd.getpwuid(checkpoint_stat.st_uid).pw_name
    except KeyError:
        checkpoint_owner = "uid:%s" % checkpoint_stat.st_uid
    print("  %-20s [owner: %8s]" % (task_id, checkpoint_owner), end="")
    if options.verbose == 0:
        print()
    if options.verbose > 0:
        state = CheckpointDispatcher.from_file(checkpoint_filename)
        if state is None or state.header is None:
            print(" - checkpoint stream CORRUPT or outdated format")
            return
        print("  state: %8s" % TaskState._VALUES_TO_NAMES.get(state.statuses[-1].state, "Unknown"), end="")
        print(" start: %25s" % time.asctime(time.localtime(state.header.launch_time_ms / 1000.0)))
    if options.verbose > 1:
        print("    user: %s" % state.header.user, end="")
        if state.header.ports:
            print(" ports: %s" % " ".join("%s -> %s" % (key, val) for key, val in state.header.ports.items()))
        else:
            print(" ports: None")
        print("    sandbox: %s" % state.header.sandbox)
    if options.verbose > 2:
        print("    process table:")
        for process, process_history in state.processes.items():
            print("      - %s runs: %s" % (process, len(process_history)), end="")
            last_run = process_history[-1]
            print(" last: pid=%s, rc=%s, finish:%s, state:%s" % (
                last_run.pid or "None", last_run.return_code if last_run.return_code is not None else "",
                time.asctime(time.localtime(last_run.stop_time)) if last_run.stop_time else "None",
                ProcessState._VALUES_TO_NAMES.get(last_run.state, "Unknown")))
        print()


def ckpt_main(ckpt, assemble=True):
    """The seed's `main` (thermos_ckpt): print every record, then the assembled state."""
    fp = open(ckpt, "rb")
    rr = ThriftRecordReader(fp, RunnerCkpt)
    wrs = RunnerState(processes={})
    dispatcher = CheckpointDispatcher()
    try:
        for wts in rr:
            print("Recovering: %s" % wts)
            if assemble is True:
                dispatcher.dispatch(wrs, wts)
    except RecordIO.Error as err:
        print("Error recovering checkpoint stream: %s" % err, file=sys.stderr)
        return
    finally:
        fp.close()
    print("\n\n\n")
    if assemble:
        print("Recovered Task Header")
        pprint.pprint(wrs.header, indent=4)
        print("\nRecovered Task States")
        for task_status in wrs.statuses:
            print("  %s [pid: %d] => %s" % (
                time.asctime(time.localtime(task_status.timestamp_ms / 1000.0)),
                task_status.runner_pid, TaskState._VALUES_TO_NAMES[task_status.state]))
        print("\nRecovered Processes")
        pprint.pprint(wrs.processes, indent=4)


# ---- the tests ------------------------------------------------------------------------------


def test_read(live, capsys):
    read([live.ckpt("hello_ok")], SimpleNamespace(simple=False))
    out = capsys.readouterr().out
    assert out.startswith("Recovered Task Header:\n  id:      hello_ok\n")
    assert "Recovered Task States:\n" in out and "=> SUCCESS\n" in out
    assert "Recovered Processes:\n  hello   runs: 1\n     0: pid=" in out
    read([live.ckpt("hello_ok")], SimpleNamespace(simple=True))
    assert capsys.readouterr().out.startswith("CKPT: RunnerCkpt(")


def test_get_states_and_get_sandbox(live):
    observer = Observer(live.root)
    states = [state for _, state in observer.get_states("hello_fail")]
    assert states[0] == TaskState.ACTIVE and states[-1] == TaskState.FAILED
    assert observer.get_sandbox("hello_ok") == live.harness["hello_ok"].sandbox
    assert observer.get_states("nonexistent") == [] and observer.get_sandbox("nonexistent") is None


def test_task_monitor_both_constructors(live):
    for first in (live.root, TaskPath(root=live.root)):
        monitor = TaskMonitor(first, "hello_active")
        assert monitor.active and not monitor.finished
        [(status, run)] = monitor.get_active_processes()
        assert (status.process, run, status.pid) == ("main", 0, live.active_run.pid)
        assert monitor.task_state() == TaskState.ACTIVE
        assert monitor.get_sandbox() == live.harness["hello_active"].sandbox
        assert isinstance(monitor._lock, type(threading.Lock()))  # noqa: SLF001 - the seed's field
    done = TaskMonitor(live.root, "hello_ok")
    assert done.finished and done.task_state() == TaskState.SUCCESS and done.get_active_processes() == []


def test_tail(live, capsys):
    tail(["hello_ok"], SimpleNamespace(root=live.root, use_stderr=False))
    log = os.path.join(live.harness["hello_ok"].sandbox, ".logs", "hello", "0", "stdout")
    assert capsys.readouterr().out == "Tail of terminal log %s\nhello world\nline2\n" % log
    tail(["hello_active"], SimpleNamespace(root=live.root, use_stderr=False))
    assert capsys.readouterr().out.startswith("Tail of active log ")


def test_format_task(live, capsys):
    detector = TaskDetector(live.root)
    format_task(detector, "hello_fail", SimpleNamespace(verbose=3))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("  hello_fail           [owner: ") and "state:   FAILED start: " in out[0]
    assert out[1].endswith(" ports: None")
    assert out[2] == "    sandbox: %s" % live.harness["hello_fail"].sandbox
    assert out[3] == "    process table:" and out[4].startswith("      - main runs: 1 last: pid=")
    assert "rc=3" in out[4] and out[4].endswith("state:FAILED")


def test_inspect(live):
    inspection = CheckpointInspector(live.root).inspect("hello_ok")
    state = CheckpointDispatcher.from_file(live.ckpt("hello_ok"))
    run = state.processes["hello"][0]
    assert (run.pid, os.getuid(), run.start_time) in inspection.processes
    assert (run.coordinator_pid, os.getuid(), run.fork_time) in inspection.coordinator_processes
    assert inspection.runner_processes[0][0] == state.statuses[0].runner_pid
    assert inspection.process_latest_update >= inspection.runner_latest_update >= run.start_time


def test_thermos_ckpt_main(live, capsys):
    ckpt_main(live.ckpt("hello_fail"))
    out = capsys.readouterr().out
    assert out.startswith("Recovering: RunnerCkpt(")
    assert "Recovered Task Header\nRunnerHeader(task_id='hello_fail'" in out
    assert "\nRecovered Processes\n{   'main': [   ProcessStatus(" in out
