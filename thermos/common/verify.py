"""Proving a task's checkpoints consistent, and saying exactly where they are not.

`verify_task` reads one task's runner checkpoint, its `coordinator.<process>` checkpoints and its
task JSON, and returns every `Finding`: a problem (the files contradict each other or the format)
or a note (something normal that a reader should know, such as a torn last record). The checks
themselves are pure functions over bytes and decoded records, so the observer or the GC can run
them on what they have already read. `thermos verify` is a thin shell around this module.

What is checked:
* framing: a torn tail (the last frame cut short, or NUL bytes after the last frame, as a crash
  during an append leaves) is a note, because every reader ignores it and the next append is
  retried; anything wrong *before* the last frame is a problem with its byte offset, since
  readers stop there and lose every later record. RecordIO has no checksum: a flipped byte is
  only found when it breaks the framing, the Thrift encoding or one of the rules below;
* exactly one runner header, naming the task of the directory it is in;
* task states follow ACTIVE -> CLEANING -> FINALIZING -> terminal (repeats allowed, steps may be
  skipped as Aurora's legacy checkpoints do; nothing after a terminal state), timestamps never
  going back;
* per process: sequence numbers strictly +1, transitions allowed by the dispatcher's table
  (spec thermos.md §3.5, `thermos.common.ckpt`), fork/start/stop times never going back;
* every coordinator record equals the runner's record of the same sequence number, and every
  record only a coordinator writes (FORKED, RUNNING, SUCCESS, FAILED after RUNNING) is in its
  coordinator checkpoint. Coordinator records the runner has not copied yet are a note while the
  task is live and a problem once the runner recorded the task's end;
* the task JSON is in tasks/active while the task is live and in tasks/finished once it ended.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from thrift.protocol import TBinaryProtocol
from thrift.transport import TTransport

from thermos.common.ckpt import _TRANSITIONS, TERMINAL_PROCESS_STATES
from thermos.common.recordio import HEADER, HEADER_SIZE, MAXIMUM_RECORD_SIZE
from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt, TaskState

try:
    from thrift.protocol import fastbinary
except ImportError:  # pragma: no cover - the C extension ships with the pinned thrift wheel
    fastbinary = None

ERROR = "error"
NOTE = "note"

TERMINAL_TASK_STATES = frozenset((TaskState.SUCCESS, TaskState.FAILED, TaskState.KILLED, TaskState.LOST))
_T = TaskState
# task state -> the states that may follow it
_TASK_NEXT: dict[int, frozenset[int]] = {
    _T.ACTIVE: frozenset((_T.ACTIVE, _T.CLEANING)) | TERMINAL_TASK_STATES,
    _T.CLEANING: frozenset((_T.CLEANING, _T.FINALIZING)) | TERMINAL_TASK_STATES,
    _T.FINALIZING: frozenset((_T.FINALIZING,)) | TERMINAL_TASK_STATES,
}
# Records only a coordinator writes (the runner copies them); FAILED is one only after RUNNING.
_COORDINATOR_ONLY = frozenset((ProcessState.FORKED, ProcessState.RUNNING, ProcessState.SUCCESS))
# The runner records these itself when it kills or loses a run, possibly while the coordinator
# records its own end for the same sequence number.
_RUNNER_ENDS = frozenset((ProcessState.KILLED, ProcessState.LOST))
_TIME_FIELDS = ("fork_time", "start_time", "stop_time")


def _pname(state: int | None) -> str:
    return ProcessState._VALUES_TO_NAMES.get(state, repr(state))


def _tname(state: int | None) -> str:
    return TaskState._VALUES_TO_NAMES.get(state, repr(state))


@dataclass(frozen=True)
class Finding:
    """One problem or note: the file, where in it (record index from 0, byte offset), what."""

    path: str
    message: str
    record: int | None = None
    offset: int | None = None
    severity: str = ERROR

    def line(self) -> str:
        where = []
        if self.record is not None:
            where.append("record %d" % self.record)
        if self.offset is not None:
            where.append("byte %d" % self.offset)
        prefix = "%s: %s" % (self.path, " at ".join(where)) if where else self.path
        return "%s: %s%s" % (prefix, "note: " if self.severity == NOTE else "", self.message)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "record": self.record, "offset": self.offset, "message": self.message}


@dataclass(frozen=True)
class Frame:
    """A whole, decoded record: its index in the file and the byte offset of its frame header."""

    index: int
    offset: int
    record: RunnerCkpt


@dataclass
class StreamScan:
    """The frames of one file up to the first corruption, and what was wrong with the rest."""

    frames: list[Frame]
    findings: list[Finding]
    size: int
    corrupt: bool = False  # the records after `frames` could not be read: later checks are partial


# ---- framing -----------------------------------------------------------------------------------


def _decode(data: bytes, start: int, end: int) -> tuple[RunnerCkpt, int]:
    """Decode the RunnerCkpt at data[start:end]; returns it and where its encoding ended."""
    record = RunnerCkpt()
    buf = TTransport.TMemoryBuffer(data[start:end])
    try:
        if fastbinary is not None:
            fastbinary.decode_binary(record, TBinaryProtocol.TBinaryProtocolAccelerated(buf),
                                     [RunnerCkpt, RunnerCkpt.thrift_spec])
            consumed = buf.cstringio_buf.tell()
        else:  # pragma: no cover
            record.read(TBinaryProtocol.TBinaryProtocol(buf))
            consumed = buf._buffer.tell()
    except Exception as err:  # noqa: BLE001 - thrift raises many unrelated types on garbage
        raise ValueError("undecodable record (%s: %s)" % (type(err).__name__, err)) from None
    return record, start + consumed


def _whole_frames(data: bytes, offset: int) -> int:
    """How many whole, decodable frames follow one another from `offset` (a resynchronisation)."""
    count = 0
    while offset + HEADER_SIZE <= len(data):
        (length,) = HEADER.unpack_from(data, offset)
        end = offset + HEADER_SIZE + length
        if length > MAXIMUM_RECORD_SIZE or end > len(data):
            break
        try:
            _, stop = _decode(data, offset + HEADER_SIZE, end)
        except ValueError:
            break
        if stop != end:
            break
        count += 1
        offset = end
    return count


def _all_zero(data: bytes, offset: int) -> bool:
    return data.count(0, offset) == len(data) - offset


def _following(count: int) -> str:
    if not count:
        return ""
    return "; %d whole record%s follow%s it, which readers never see" % (
        count, "" if count == 1 else "s", "s" if count == 1 else "")


def scan_stream(data: bytes, path: str) -> StreamScan:
    """Split `data` into frames; a torn tail is a note, damage before it a problem with its offset."""
    size = len(data)
    scan = StreamScan([], [], size)
    offset = 0
    while offset < size:
        index = len(scan.frames)
        rest = size - offset
        if _all_zero(data, offset):
            scan.findings.append(Finding(path, "torn tail: %d NUL byte%s after the last record (left by a "
                                         "crash; readers ignore them)" % (rest, "" if rest == 1 else "s"),
                                         index, offset, NOTE))
            break
        if rest < HEADER_SIZE:
            scan.findings.append(Finding(
                path, "torn tail: %d byte%s of an unfinished frame header (an append cut short; readers "
                "ignore it)" % (rest, "" if rest == 1 else "s"), index, offset, NOTE))
            break
        (length,) = HEADER.unpack_from(data, offset)
        body = offset + HEADER_SIZE
        end = body + length
        if length > MAXIMUM_RECORD_SIZE:
            scan.findings.append(Finding(path, "corrupt frame header: announces %d bytes, more than the %d "
                                         "byte limit; readers stop here" % (length, MAXIMUM_RECORD_SIZE),
                                         index, offset))
            scan.corrupt = True
            break
        if end > size:
            scan.findings.append(_overlong(data, path, index, offset, length))
            scan.corrupt = scan.findings[-1].severity == ERROR
            break
        resync = end
        try:
            record, stop = _decode(data, body, end)
            if stop != end:
                resync = stop  # the length header is the likelier damage: whole frames may follow the record
                raise ValueError("the record ends %d bytes before its frame does" % (end - stop))
        except ValueError as err:
            if end == size or _all_zero(data, end):
                scan.findings.append(Finding(path, "torn tail: the last frame (%d bytes) does not decode: %s "
                                             "(an append cut short; readers ignore it)" % (length, err),
                                             index, offset, NOTE))
                break
            scan.findings.append(Finding(path, "corrupt record: %s; readers stop here%s" % (
                err, _following(_whole_frames(data, resync))), index, offset))
            scan.corrupt = True
            break
        scan.frames.append(Frame(index, offset, record))
        offset = end
    return scan


def _overlong(data: bytes, path: str, index: int, offset: int, length: int) -> Finding:
    """A frame announcing more bytes than the file holds: a torn tail, or a damaged length header.

    When a whole record decodes from the bytes that are there and whole frames follow it, the
    length header was damaged, and readers (which take it for a torn tail) silently lose the rest.
    """
    have = len(data) - offset - HEADER_SIZE
    try:
        _, stop = _decode(data, offset + HEADER_SIZE, len(data))
    except ValueError:
        stop = None
    if stop is not None:
        following = _whole_frames(data, stop)
        if following:
            return Finding(path, "corrupt frame header: announces %d bytes, but its record is %d bytes long"
                           "%s (they take it for a torn tail)" % (
                               length, stop - offset - HEADER_SIZE, _following(following)), index, offset)
    return Finding(path, "torn tail: the last frame announces %d bytes but only %d follow (an append cut "
                   "short; readers ignore it)" % (length, have), index, offset, NOTE)


# ---- the runner checkpoint -----------------------------------------------------------------------


@dataclass
class _Run:
    """What the checks remember about a process: its last record and its last time."""

    seq: int
    state: int
    time: float | None = None
    time_field: str = ""
    time_record: int = 0


@dataclass
class RunnerRecord:
    """A process record of the runner checkpoint, for the comparison with coordinators."""

    frame: Frame
    status: ProcessStatus
    previous_state: int | None


@dataclass
class RunnerView:
    """What the runner checkpoint says, as far as the coordinator and task JSON checks need it."""

    task_state: int | None = None
    header_task_id: str | None = None
    records: int = 0
    partial: bool = False  # the checkpoint is corrupt: only the records before the damage are known
    by_process: dict[str, dict[int, RunnerRecord]] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.task_state in TERMINAL_TASK_STATES


def _set_members(record: RunnerCkpt) -> list[str]:
    return [spec[2] for spec in RunnerCkpt.thrift_spec if spec and getattr(record, spec[2]) is not None]


def check_runner(frames: list[Frame], path: str, task_id: str | None = None,
                 partial: bool = False) -> tuple[RunnerView, list[Finding]]:
    """The header, task-state and per-process rules over the runner checkpoint's records.

    `partial`: the frames end at a corruption, so what is missing may lie beyond it.
    """
    view = RunnerView(records=len(frames), partial=partial)
    findings: list[Finding] = []
    header_at: Frame | None = None
    last_task: Frame | None = None
    runs: dict[str, _Run] = {}

    def problem(frame: Frame, message: str) -> None:
        findings.append(Finding(path, message, frame.index, frame.offset))

    for frame in frames:
        record = frame.record
        members = _set_members(record)
        if not members:
            problem(frame, "empty record (no member of RunnerCkpt is set)")
        elif len(members) > 1:
            problem(frame, "record sets %s at once (a RunnerCkpt holds one)" % " and ".join(members))
        elif record.runner_header is not None:
            if header_at is not None:
                problem(frame, "second runner header (the first is record %d)" % header_at.index)
                continue
            header_at = frame
            view.header_task_id = record.runner_header.task_id
            if task_id is not None and record.runner_header.task_id != task_id:
                problem(frame, "runner header names task %r, but the checkpoint is that of %r" % (
                    record.runner_header.task_id, task_id))
        elif record.task_status is not None:
            _check_task_status(frame, last_task, problem)
            if record.task_status.state in TaskState._VALUES_TO_NAMES:
                last_task = frame
        elif record.process_status is not None:
            _check_process_status(frame, runs, view, problem)
    if header_at is None and not partial:
        findings.append(Finding(path, "no runner header (readers cannot rebuild the task without one)"))
    if last_task is None and not partial:
        findings.append(Finding(path, "no task status (a runner checkpoint starts with ACTIVE)"))
    elif last_task is not None:
        view.task_state = last_task.record.task_status.state
    return view, findings


def _check_task_status(frame: Frame, last: Frame | None, problem: Any) -> None:
    status = frame.record.task_status
    if status.state not in TaskState._VALUES_TO_NAMES:
        problem(frame, "unknown task state %r" % (status.state,))
        return
    if last is None:
        if status.state != TaskState.ACTIVE:
            problem(frame, "the first task status is %s, not ACTIVE" % _tname(status.state))
        return
    previous = last.record.task_status
    if status.state not in _TASK_NEXT.get(previous.state, frozenset()):
        problem(frame, "illegal task transition %s -> %s (from record %d)" % (
            _tname(previous.state), _tname(status.state), last.index))
    if status.timestamp_ms is not None and previous.timestamp_ms is not None \
            and status.timestamp_ms < previous.timestamp_ms:
        problem(frame, "task status %s goes back in time: timestamp_ms %d is %.3f s before record %d's" % (
            _tname(status.state), status.timestamp_ms, (previous.timestamp_ms - status.timestamp_ms) / 1000.0,
            last.index))


def _check_process_status(frame: Frame, runs: dict[str, _Run], view: RunnerView, problem: Any) -> None:
    update = frame.record.process_status
    name, state, seq = update.process, update.state, update.seq
    if name is None or seq is None:
        problem(frame, "process record without %s" % (
            "a process name" if name is None else "a sequence number"))
        return
    if state not in _TRANSITIONS:
        problem(frame, "process %s: unknown process state %r (seq %d)" % (name, state, seq))
        return
    run = runs.get(name)
    if run is None:
        if state != ProcessState.WAITING:
            problem(frame, "process %s: first record is %s, not WAITING (seq %d)" % (
                name, _pname(state), seq))
    elif seq != run.seq + 1:
        problem(frame, "process %s: sequence number %d after %d (expected %d)" % (
            name, seq, run.seq, run.seq + 1))
    previous_state = run.state if run is not None else None
    if run is not None:
        allowed, _ = _TRANSITIONS[state]
        legal = (previous_state in TERMINAL_PROCESS_STATES) if state == ProcessState.WAITING \
            else previous_state in allowed
        if not legal:
            problem(frame, "process %s: illegal transition %s -> %s (seq %d)" % (
                name, _pname(previous_state), _pname(state), seq))
    missing = [f for f in _TRANSITIONS[state][1] if getattr(update, f) is None]
    if missing:
        problem(frame, "process %s: %s record (seq %d) lacks %s" % (
            name, _pname(state), seq, ", ".join(missing)))
    if run is None:
        run = runs[name] = _Run(seq, state)
    for time_field in _TIME_FIELDS:
        value = getattr(update, time_field)
        if value is None:
            continue
        if run.time is not None and value < run.time:
            problem(frame, "process %s: %s goes back in time: %s %.6f is %.3f s before the %s of "
                    "record %d" % (name, _pname(state), time_field, value, run.time - value, run.time_field,
                                   run.time_record))
        run.time, run.time_field, run.time_record = value, time_field, frame.index
    run.seq, run.state = seq, state
    view.by_process.setdefault(name, {}).setdefault(seq, RunnerRecord(frame, update, previous_state))
    view.last_seq[name] = max(seq, view.last_seq.get(name, seq))


# ---- coordinator checkpoints ----------------------------------------------------------------------


def _describe(status: ProcessStatus) -> str:
    fields = ["%s=%s" % (f, getattr(status, f)) for f in (
        "coordinator_pid", "fork_time", "start_time", "pid", "stop_time", "return_code")
        if getattr(status, f) is not None]
    return "%s(%s)" % (_pname(status.state), ", ".join(fields))


def check_coordinator(scan: StreamScan, path: str, process: str, view: RunnerView,
                      runner_path: str) -> list[Finding]:
    """One coordinator checkpoint against itself and against the runner checkpoint's records."""
    findings: list[Finding] = []
    runner_records = view.by_process.get(process, {})
    last_runner_seq = view.last_seq.get(process)
    seen: set[int] = set()
    pending: list[int] = []
    previous: ProcessStatus | None = None
    for frame in scan.frames:
        status = frame.record.process_status
        if status is None or _set_members(frame.record) != ["process_status"]:
            findings.append(Finding(path, "not a process record: a coordinator checkpoint holds only its "
                                    "process's records", frame.index, frame.offset))
            continue
        if status.process != process or status.seq is None:
            findings.append(Finding(path, "record of process %r (seq %s) in the checkpoint of %r" % (
                status.process, status.seq, process), frame.index, frame.offset))
            continue
        if previous is not None:
            if status.state == ProcessState.FORKED:
                if status.seq <= previous.seq:
                    findings.append(Finding(path, "sequence number %d after %d (must increase)" % (
                        status.seq, previous.seq), frame.index, frame.offset))
            elif status.seq != previous.seq + 1:
                findings.append(Finding(path, "sequence number %d after %d (expected %d)" % (
                    status.seq, previous.seq, previous.seq + 1), frame.index, frame.offset))
        previous = status
        seen.add(status.seq)
        theirs = runner_records.get(status.seq)
        if theirs is None:
            if view.partial and (last_runner_seq is None or status.seq > last_runner_seq):
                continue  # the runner's records that far are beyond its damage
            if last_runner_seq is None or status.seq > last_runner_seq:
                pending.append(status.seq)
            else:
                findings.append(Finding(path, "seq %d (%s) is missing from the runner checkpoint %s" % (
                    status.seq, _pname(status.state), runner_path), frame.index, frame.offset))
        elif theirs.status != status:
            where = "record %d at byte %d of %s" % (theirs.frame.index, theirs.frame.offset, runner_path)
            if theirs.status.state in _RUNNER_ENDS and status.state in TERMINAL_PROCESS_STATES:
                findings.append(Finding(
                    path, "seq %d: the runner recorded %s (%s) before it read this %s; the runner's record "
                    "stands" % (status.seq, _pname(theirs.status.state), where, _pname(status.state)),
                    frame.index, frame.offset, NOTE))
            else:
                findings.append(Finding(
                    path, "seq %d disagrees with the runner checkpoint: %s here, %s in %s" % (
                        status.seq, _describe(status), _describe(theirs.status), where),
                    frame.index, frame.offset))
    if pending:
        span = "seq %d" % pending[0] if len(pending) == 1 else "seq %d-%d" % (pending[0], pending[-1])
        count = "%d record%s (%s)" % (len(pending), "" if len(pending) == 1 else "s", span)
        if view.terminal:
            findings.append(Finding(path, "%s never reached the runner checkpoint, which says the task "
                                    "ended %s" % (count, _tname(view.task_state))))
        else:
            findings.append(Finding(path, "%s not yet copied into the runner checkpoint (the runner copies "
                                    "them as it reads this file)" % count, severity=NOTE))
    checked_to = previous.seq if scan.corrupt and previous is not None else None
    for seq, theirs in sorted(runner_records.items()):
        if seq in seen or not _written_by_coordinator(theirs):
            continue
        if scan.corrupt and (checked_to is None or seq > checked_to):
            continue  # beyond the damage: unknown, already reported
        findings.append(Finding(
            runner_path, "process %s: seq %d (%s) is not in its coordinator checkpoint %s" % (
                process, seq, _pname(theirs.status.state), path), theirs.frame.index, theirs.frame.offset))
    return findings


def _written_by_coordinator(record: RunnerRecord) -> bool:
    state = record.status.state
    return state in _COORDINATOR_ONLY or (
        state == ProcessState.FAILED and record.previous_state == ProcessState.RUNNING)


def check_missing_coordinators(view: RunnerView, present: set[str], checkpoint_dir: str,
                               runner_path: str) -> list[Finding]:
    """A process whose coordinators wrote records the runner copied, but whose checkpoint is gone."""
    findings = []
    for process, records in sorted(view.by_process.items()):
        if process in present:
            continue
        written = [r for _, r in sorted(records.items()) if _written_by_coordinator(r)]
        if written:
            first = written[0].frame
            findings.append(Finding(
                runner_path, "process %s: %d record%s written by its coordinators, but %s is missing" % (
                    process, len(written), "" if len(written) == 1 else "s",
                    os.path.join(checkpoint_dir, "coordinator." + process)), first.index, first.offset))
    return findings


# ---- task JSON ------------------------------------------------------------------------------------


def check_task_json(root: str, task_id: str, task_state: int | None) -> list[Finding]:
    """The task JSON is in tasks/active while the task is live, in tasks/finished once it ended."""
    paths = {where: os.path.join(root, "tasks", where, task_id) for where in ("active", "finished")}
    present = {where: path for where, path in paths.items() if os.path.lexists(path)}
    findings = []
    for path in present.values():
        problem = _json_problem(path)
        if problem:
            findings.append(Finding(path, problem))
    if task_state is None:
        if not present:
            findings.append(Finding(paths["active"], "no task JSON in tasks/active or tasks/finished"))
        return findings
    want, other = ("finished", "active") if task_state in TERMINAL_TASK_STATES else ("active", "finished")
    if other in present:
        findings.append(Finding(present[other], "task JSON in tasks/%s, but the runner checkpoint says the "
                                "task is %s (it belongs in tasks/%s)" % (other, _tname(task_state), want)))
    elif want not in present:
        findings.append(Finding(paths[want], "task JSON missing: the task is %s, so it should be here" % (
            _tname(task_state))))
    return findings


def _json_problem(path: str) -> str | None:
    try:
        with open(path, "rb") as fp:
            value = json.loads(fp.read())
    except OSError as err:
        return "cannot read the task JSON: %s" % (err.strerror or err)
    except ValueError as err:
        return "task JSON does not parse: %s" % err
    return None if isinstance(value, dict) else "task JSON is not an object"


# ---- a whole task -----------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything found about one task's checkpoints."""

    task_id: str
    checkpoint_dir: str
    root: str | None
    findings: list[Finding]
    task_state: int | None = None  # the last task state recorded (before the damage, if `partial`)
    records: int = 0
    coordinators: list[str] = field(default_factory=list)
    partial: bool = False  # the runner checkpoint is damaged: records past the damage are unknown

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == NOTE]

    @property
    def consistent(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "checkpoint_dir": self.checkpoint_dir, "root": self.root,
                "state": _tname(self.task_state) if self.task_state is not None else None,
                "consistent": self.consistent, "partial": self.partial, "records": self.records,
                "coordinators": self.coordinators,
                "problems": [f.to_json() for f in self.problems], "notes": [f.to_json() for f in self.notes]}


def _read(path: str) -> bytes:
    with open(path, "rb") as fp:
        return fp.read()


def locate(checkpoint_dir: str) -> tuple[str | None, str]:
    """(root, task_id) of a checkpoint directory laid out as ROOT/checkpoints/TASK_ID (root None if not)."""
    checkpoint_dir = os.path.normpath(checkpoint_dir)
    parent = os.path.dirname(checkpoint_dir)
    task_id = os.path.basename(checkpoint_dir)
    if os.path.basename(parent) == "checkpoints":
        return os.path.dirname(parent), task_id
    return None, task_id


def verify_task(checkpoint_dir: str, runner_file: str = "runner", root: str | None = None,
                task_id: str | None = None) -> Report:
    """Check the task whose checkpoints are in `checkpoint_dir` (and, given its root, its task JSON)."""
    found_root, found_id = locate(checkpoint_dir)
    root = root if root is not None else found_root
    if task_id is None and found_root is not None:
        task_id = found_id  # outside ROOT/checkpoints/ the directory's name says nothing
    runner_path = os.path.join(checkpoint_dir, runner_file)
    report = Report(task_id or found_id, checkpoint_dir, root, [])
    try:
        data = _read(runner_path)
    except OSError as err:
        report.findings.append(Finding(runner_path, "cannot read the runner checkpoint: %s" % (
            err.strerror or err)))
        data = None
    view = RunnerView()
    if data is not None:
        if not data:
            report.findings.append(Finding(runner_path, "empty runner checkpoint"))
        scan = scan_stream(data, runner_path)
        report.findings.extend(scan.findings)
        view, findings = check_runner(scan.frames, runner_path, task_id, partial=scan.corrupt)
        if data:
            report.findings.extend(findings)
        report.records = view.records
        report.partial = view.partial
        if task_id is None and view.header_task_id:
            report.task_id = view.header_task_id
        report.task_state = view.task_state
    try:
        names = sorted(n for n in os.listdir(checkpoint_dir) if n.startswith("coordinator."))
    except OSError:
        names = []
    for name in names:
        path = os.path.join(checkpoint_dir, name)
        report.coordinators.append(name)
        try:
            cdata = _read(path)
        except OSError as err:
            report.findings.append(Finding(path, "cannot read the coordinator checkpoint: %s" % (
                err.strerror or err)))
            continue
        cscan = scan_stream(cdata, path)
        report.findings.extend(cscan.findings)
        if data is not None:
            process = name[len("coordinator."):]
            report.findings.extend(check_coordinator(cscan, path, process, view, runner_path))
    if data is not None:
        present = {name[len("coordinator."):] for name in names}
        report.findings.extend(check_missing_coordinators(view, present, checkpoint_dir, runner_path))
    if root is None:
        report.findings.append(Finding(checkpoint_dir, "task JSON not checked: the directory is not laid out "
                                       "as ROOT/checkpoints/TASK_ID", severity=NOTE))
    else:
        state = None if view.partial else report.task_state  # a damaged checkpoint may end early
        report.findings.extend(check_task_json(root, report.task_id, state))
    paths = [runner_path] + [os.path.join(checkpoint_dir, name) for name in names]
    report.findings = _in_file_order(report.findings, paths)
    return report


def _in_file_order(findings: list[Finding], paths: list[str]) -> list[Finding]:
    """Each file's findings together (`paths` first, then as met), by record within a file."""
    rank = {path: i for i, path in enumerate(paths)}
    for finding in findings:
        rank.setdefault(finding.path, len(rank))
    return sorted(findings, key=lambda f: (rank[f.path], f.record is None, f.record or 0))
