"""Replay a thermos checkpoint.

Usage: thermos read [options] checkpoint_filename

Without options, replays the task state machine and prints the recovered header, task states
and process runs (newest run first). --simple prints every record as it is stored instead;
--json prints either view as JSON for scripts.
"""

from __future__ import annotations

import argparse
import os

from thermos.cli.common import CommandError, add_command_parser, asctime, print_json, thrift_to_json
from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.recordio import RecordIO, ThriftRecordReader
from thermos.gen.thermos.ttypes import ProcessState, RunnerCkpt, RunnerState, TaskState

NAME = "read"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, NAME, __doc__)
    parser.add_argument("--simple", action="store_true",
                        help="Do not replay the full task state machine; only print each checkpoint record.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of text.")
    parser.add_argument("checkpoint", nargs="*", help="a runner checkpoint: ROOT/checkpoints/TASK_ID/runner")
    return parser


def _record_json(record: RunnerCkpt) -> dict[str, object]:
    if record.process_status is not None:
        return {"process_status": thrift_to_json(record.process_status, {"state": ProcessState})}
    if record.task_status is not None:
        return {"task_status": thrift_to_json(record.task_status, {"state": TaskState})}
    return thrift_to_json(record)


def state_json(state: RunnerState) -> dict[str, object]:
    """A replayed RunnerState as JSON: header, task statuses and every run of every process."""
    return {
        "header": thrift_to_json(state.header) if state.header is not None else None,
        "statuses": thrift_to_json(state.statuses or [], {"state": TaskState}),
        "processes": {name: thrift_to_json(runs, {"state": ProcessState})
                      for name, runs in (state.processes or {}).items()},
    }


def _records(filename: str, simple: bool, as_json: bool) -> RunnerState:
    """Read (and unless `simple`, replay) every record; one-line CommandError on failure."""
    dispatcher = CheckpointDispatcher()
    state = RunnerState(processes={})
    printed = []
    try:
        with open(filename, "rb") as fp:
            for record in ThriftRecordReader(fp, RunnerCkpt):
                if simple:
                    if as_json:
                        printed.append(_record_json(record))
                    else:
                        print("CKPT: %s" % record)
                else:
                    dispatcher.dispatch(state, record)
    except (OSError, RecordIO.Error, CheckpointDispatcher.Error) as err:
        if printed:
            print_json(printed)
        raise CommandError("Failed to recover from %s: %s (the records before it are shown by "
                           "'thermos read --simple')" % (filename, err)) from None
    if simple and as_json:
        print_json(printed)
    return state


def _print_state(state: RunnerState) -> None:
    header = state.header
    print("Recovered Task Header:")
    print("  id:      %s" % header.task_id)
    print("  user:    %s" % header.user)
    print("  host:    %s" % header.hostname)
    print("  sandbox: %s" % header.sandbox)
    if header.ports:
        print("  ports:   %s" % " ".join("%s->%s" % (name, port) for name, port in header.ports.items()))
    print("Recovered Task States:")
    for status in state.statuses or []:
        print("  %s [pid: %s] => %s" % (
            asctime(status.timestamp_ms / 1000.0), status.runner_pid,
            TaskState._VALUES_TO_NAMES.get(status.state, "Unknown")))
    print("Recovered Processes:")
    for process, history in (state.processes or {}).items():
        print("  %s   runs: %s" % (process, len(history)))
        for k in reversed(range(len(history))):
            run = history[k]
            print("    %2d: pid=%s, rc=%s, finish:%s, state:%s" % (
                k, run.pid,
                run.return_code if run.return_code is not None else "",
                asctime(run.stop_time) if run.stop_time else "None",
                ProcessState._VALUES_TO_NAMES.get(run.state, "Unknown")))


def _checkpoint_in(directory: str) -> str:
    """The runner checkpoint a directory holds or leads to (a task's dir, ROOT/checkpoints, ROOT)."""
    if os.path.isfile(os.path.join(directory, "runner")):
        return os.path.join(directory, "runner")
    checkpoints = directory
    if os.path.isdir(os.path.join(directory, "checkpoints")):
        checkpoints = os.path.join(directory, "checkpoints")
    try:
        tasks = sorted(name for name in os.listdir(checkpoints)
                       if os.path.isfile(os.path.join(checkpoints, name, "runner")))
    except OSError:
        tasks = []
    return os.path.join(checkpoints, tasks[0] if tasks else "TASK_ID", "runner")


def run(args: argparse.Namespace) -> int:
    if len(args.checkpoint) != 1:
        raise CommandError("Expected one checkpoint file, got %d (e.g. thermos read "
                           "/var/run/thermos/checkpoints/TASK_ID/runner)" % len(args.checkpoint))
    filename = args.checkpoint[0]
    if not os.path.exists(filename):
        raise CommandError("Could not find %s (give a runner checkpoint: ROOT/checkpoints/TASK_ID/runner; "
                           "'thermos status' lists the tasks)" % filename)
    if os.path.isdir(filename):
        raise CommandError("%s is a directory; give a runner checkpoint file, e.g. %s" % (
            filename, _checkpoint_in(filename)))
    state = _records(filename, args.simple, args.json)
    if args.simple:
        return 0
    if state.header is None:
        raise CommandError("Checkpoint stream CORRUPT or outdated format: %s has no runner header "
                           "(see its records with 'thermos read --simple %s')" % (filename, filename))
    if args.json:
        print_json(dict(state_json(state), checkpoint=filename))
    else:
        _print_state(state)
    return 0
