"""thermos.common.verify on checkpoints written by real thermos_runner runs, then broken one way each."""

from __future__ import annotations

import os
import shutil

import pytest

from thermos.common.recordio import HEADER, ThriftRecordWriter
from thermos.common.verify import NOTE, Finding, scan_stream, verify_task
from thermos.config.schema import Process, Resources, Task
from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt, TaskState, TaskStatus
from thermos.testing.runner import RunnerHarness

RES = Resources(cpu=0.1, ram=16 * 1024 * 1024, disk=16 * 1024 * 1024)
TASK = Task(name="mixed", resources=RES, max_failures=0, processes=[
    Process(name="hello", cmdline="echo hello", min_duration=0),
    Process(name="flaky", cmdline="exit 1", max_failures=2, min_duration=0)])


# ---- helpers shared with tests/cli/test_verify.py ----------------------------------------------


def run_task(base, task_id: str, task: Task = TASK) -> str:
    """Run `task` under a real thermos_runner; returns the checkpoint root it wrote."""
    harness = RunnerHarness(task, root=str(base), task_id=task_id)
    result = harness.run(timeout=60)
    assert result.returncode == 0, result.stderr
    return harness.checkpoint_root


def copy_task(src_root: str, task_id: str, dst_root: str) -> str:
    """Copy one task's checkpoints and task JSON to another root; returns its checkpoint dir."""
    ckpt_dir = os.path.join(dst_root, "checkpoints", task_id)
    shutil.copytree(os.path.join(src_root, "checkpoints", task_id), ckpt_dir)
    for state in ("active", "finished"):
        src = os.path.join(src_root, "tasks", state, task_id)
        os.makedirs(os.path.join(dst_root, "tasks", state), exist_ok=True)
        if os.path.exists(src):
            shutil.copy2(src, os.path.join(dst_root, "tasks", state, task_id))
    return ckpt_dir


def frames(path: str) -> list[tuple[int, RunnerCkpt]]:
    """(byte offset, record) of every frame, split by the length headers alone."""
    from thermos.common.recordio import ThriftCodec

    codec = ThriftCodec(RunnerCkpt)
    with open(path, "rb") as fp:
        data = fp.read()
    out, offset = [], 0
    while offset < len(data):
        (length,) = HEADER.unpack_from(data, offset)
        out.append((offset, codec.decode(data[offset + 4:offset + 4 + length])))
        offset += 4 + length
    return out


def rewrite(path: str, records: list[RunnerCkpt]) -> None:
    with open(path, "wb") as fp:
        writer: ThriftRecordWriter[RunnerCkpt] = ThriftRecordWriter(fp)
        for record in records:
            writer.write(record)


def offset_of(path: str, index: int) -> int:
    return frames(path)[index][0]


def find(path: str, predicate) -> int:
    """Index of the first record of `path` for which `predicate(record)` holds."""
    return next(i for i, (_, record) in enumerate(frames(path)) if predicate(record))


def is_process(name: str, state: int, seq: int | None = None):
    def match(record: RunnerCkpt) -> bool:
        status = record.process_status
        return status is not None and status.process == name and status.state == state and (
            seq is None or status.seq == seq)
    return match


def is_task(state: int):
    return lambda record: record.task_status is not None and record.task_status.state == state


def lines(findings: list[Finding]) -> list[str]:
    return [finding.line() for finding in findings]


# ---- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A checkpoint root holding one finished task really run: hello once, flaky failing twice."""
    return run_task(tmp_path_factory.mktemp("verify-src"), "mixed")


@pytest.fixture
def task(source, tmp_path):
    """A fresh copy of the task to break: (checkpoint root, checkpoint dir, runner, coordinator path fn)."""
    root = str(tmp_path / "root")
    ckpt_dir = copy_task(source, "mixed", root)
    return Broken(root, ckpt_dir)


class Broken:
    def __init__(self, root: str, ckpt_dir: str) -> None:
        self.root = root
        self.dir = ckpt_dir
        self.runner = os.path.join(ckpt_dir, "runner")

    def coordinator(self, process: str) -> str:
        return os.path.join(self.dir, "coordinator." + process)

    def records(self, path: str) -> list[RunnerCkpt]:
        return [record for _, record in frames(path)]

    def verify(self):
        return verify_task(self.dir)


# ---- consistent -----------------------------------------------------------------------------------


def test_a_real_run_is_consistent(task):
    report = task.verify()
    assert report.findings == []
    assert report.consistent and report.task_id == "mixed" and report.task_state == TaskState.SUCCESS
    assert report.coordinators == ["coordinator.flaky", "coordinator.hello"]
    assert report.records == len(frames(task.runner))


def test_synthetic_stream_rules_hold_for_the_fixture_generator(tmp_path):
    """thermos.testing.ckpt's streams (what other tests use as 'realistic') pass the runner rules."""
    from thermos.common.verify import check_runner
    from thermos.testing import ckpt as synth

    path = str(tmp_path / "runner")
    synth.write_stream(path, synth.runner_stream(processes=2, runs=3))
    with open(path, "rb") as fp:
        scan = scan_stream(fp.read(), path)
    assert scan.findings == [] and check_runner(scan.frames, path)[1] == []


# ---- framing ----------------------------------------------------------------------------------------


def test_torn_tail_is_a_note_with_its_offset(task):
    size = os.path.getsize(task.runner)
    last_offset, last = frames(task.runner)[-1]
    with open(task.runner, "rb") as fp:
        fp.seek(last_offset)
        whole_frame = fp.read()
    with open(task.runner, "ab") as fp:
        fp.write(whole_frame[:len(whole_frame) - 3])  # an append cut short
    report = task.verify()
    assert report.consistent
    whole = report.records
    assert lines(report.notes) == [
        "%s: record %d at byte %d: note: torn tail: the last frame announces %d bytes but only %d follow "
        "(an append cut short; readers ignore it)" % (
            task.runner, whole, size, len(whole_frame) - 4, len(whole_frame) - 7)]
    assert last.task_status.state == TaskState.SUCCESS and report.task_state == TaskState.SUCCESS


def test_torn_header_and_nul_tails_are_notes(task):
    size = os.path.getsize(task.coordinator("hello"))
    with open(task.coordinator("hello"), "ab") as fp:
        fp.write(b"\x00\x00\x01")
    with open(task.runner, "ab") as fp:
        fp.write(b"\x00" * 4096)
    report = task.verify()
    assert report.consistent
    assert sorted(lines(report.notes)) == sorted([
        "%s: record 3 at byte %d: note: torn tail: 3 bytes of an unfinished frame header (an append cut "
        "short; readers ignore it)" % (task.coordinator("hello"), size),
        "%s: record %d at byte %d: note: torn tail: 4096 NUL bytes after the last record (left by a crash; "
        "readers ignore them)" % (task.runner, report.records, os.path.getsize(task.runner) - 4096)])


def test_flipped_byte_mid_file_is_corruption_at_that_frame(task):
    index = find(task.runner, is_process("flaky", ProcessState.RUNNING))
    offset = offset_of(task.runner, index)
    total = len(frames(task.runner))
    with open(task.runner, "r+b") as fp:
        fp.seek(offset + 4)  # the first payload byte: the type of the union member
        fp.write(b"\x7f")
    report = task.verify()
    assert not report.consistent
    runner_problems = [f for f in report.problems if f.path == task.runner]
    assert lines(runner_problems) == [
        "%s: record %d at byte %d: corrupt record: undecodable record (TypeError: struct field had wrong "
        "type: expected 12 but got 127); readers stop here; %d whole records follow it, which readers "
        "never see" % (
            task.runner, index, offset, total - index - 1)]
    # what lies beyond the damage is not judged: no complaints about coordinators or the task JSON
    assert [f for f in report.problems if f.path != task.runner] == []


def test_damaged_length_header_is_found_though_readers_take_it_for_a_torn_tail(task):
    index = find(task.runner, is_process("hello", ProcessState.FORKED))
    offset, record = frames(task.runner)[index]
    total = len(frames(task.runner))
    with open(task.runner, "r+b") as fp:
        fp.seek(offset + 2)
        fp.write(b"\x40")  # length grows by 16 KiB: beyond the end of the file
    report = task.verify()
    (problem,) = [f for f in report.problems if f.path == task.runner]
    length = HEADER.unpack(open(task.runner, "rb").read()[offset:offset + 4])[0]
    assert problem.line() == (
        "%s: record %d at byte %d: corrupt frame header: announces %d bytes, but its record is %d bytes "
        "long; %d whole records follow it, which readers never see (they take it for a torn tail)" % (
            task.runner, index, offset, length, frames_len(record), total - index - 1))


def frames_len(record: RunnerCkpt) -> int:
    from thermos.common.recordio import ThriftCodec

    return len(ThriftCodec(RunnerCkpt).encode(record))


def test_huge_length_header_is_corruption(task):
    coordinator = task.coordinator("flaky")
    offset = offset_of(coordinator, 1)
    with open(coordinator, "r+b") as fp:
        fp.seek(offset)
        fp.write(b"\x7f")
    report = task.verify()
    assert lines(f for f in report.problems if f.path == coordinator) == [
        "%s: record 1 at byte %d: corrupt frame header: announces %d bytes, more than the 67108864 byte "
        "limit; readers stop here" % (coordinator, offset, HEADER.unpack(
            open(coordinator, "rb").read()[offset:offset + 4])[0])]


# ---- the runner checkpoint's rules --------------------------------------------------------------------


def test_duplicate_header(task):
    records = task.records(task.runner)
    header = find(task.runner, lambda r: r.runner_header is not None)
    records.insert(header + 2, records[header])
    rewrite(task.runner, records)
    assert lines(task.verify().problems) == [
        "%s: record %d at byte %d: second runner header (the first is record %d)" % (
            task.runner, header + 2, offset_of(task.runner, header + 2), header)]


def test_skipped_sequence_number(task):
    """flaky's second run renumbered one up, in the runner and coordinator checkpoints alike."""
    second_waiting = find(task.runner, is_process("flaky", ProcessState.WAITING, seq=4))
    for path, start in ((task.runner, second_waiting), (task.coordinator("flaky"), 3)):
        records = task.records(path)
        for record in records[start:]:
            if record.process_status is not None and record.process_status.process == "flaky":
                record.process_status.seq += 1
        rewrite(path, records)
    assert lines(task.verify().problems) == [
        "%s: record %d at byte %d: process flaky: sequence number 5 after 3 (expected 4)" % (
            task.runner, second_waiting, offset_of(task.runner, second_waiting))]


def test_illegal_transition(task):
    """A KILLED recorded by the runner after hello already succeeded."""
    records = task.records(task.runner)
    success = find(task.runner, is_process("hello", ProcessState.SUCCESS))
    done = records[success].process_status
    records.insert(success + 1, RunnerCkpt(process_status=ProcessStatus(
        seq=done.seq + 1, process="hello", state=ProcessState.KILLED, stop_time=done.stop_time,
        return_code=-1)))
    rewrite(task.runner, records)
    assert lines(task.verify().problems) == [
        "%s: record %d at byte %d: process hello: illegal transition SUCCESS -> KILLED (seq %d)" % (
            task.runner, success + 1, offset_of(task.runner, success + 1), done.seq + 1)]


def test_task_state_going_back(task):
    records = task.records(task.runner)
    active = find(task.runner, is_task(TaskState.SUCCESS))
    records.insert(active + 1, RunnerCkpt(task_status=TaskStatus(
        state=TaskState.ACTIVE, timestamp_ms=records[active].task_status.timestamp_ms, runner_pid=1,
        runner_uid=0)))
    rewrite(task.runner, records)
    report = task.verify()
    # readers now take the task for ACTIVE, so its JSON is in the wrong folder for them too
    assert lines(report.problems) == [
        "%s: record %d at byte %d: illegal task transition SUCCESS -> ACTIVE (from record %d)" % (
            task.runner, active + 1, offset_of(task.runner, active + 1), active),
        "%s: task JSON in tasks/finished, but the runner checkpoint says the task is ACTIVE (it belongs in "
        "tasks/active)" % os.path.join(task.root, "tasks", "finished", "mixed")]


def test_task_timestamp_going_back(task):
    records = task.records(task.runner)
    cleaning = find(task.runner, is_task(TaskState.CLEANING))
    finalizing = find(task.runner, is_task(TaskState.FINALIZING))
    records[finalizing].task_status.timestamp_ms = records[cleaning].task_status.timestamp_ms - 5000
    rewrite(task.runner, records)
    assert lines(task.verify().problems) == [
        "%s: record %d at byte %d: task status FINALIZING goes back in time: timestamp_ms %d is 5.000 s "
        "before record %d's" % (task.runner, finalizing, offset_of(task.runner, finalizing),
                         records[finalizing].task_status.timestamp_ms, cleaning)]


def test_process_time_going_back(task):
    """hello's RUNNING says it started 2 s before it was forked (in both checkpoints, which agree)."""
    forked = find(task.runner, is_process("hello", ProcessState.FORKED))
    running = find(task.runner, is_process("hello", ProcessState.RUNNING))
    for path in (task.runner, task.coordinator("hello")):
        records = task.records(path)
        fork_time = next(r.process_status.fork_time for r in records
                         if r.process_status is not None and r.process_status.process == "hello"
                         and r.process_status.state == ProcessState.FORKED)
        for record in records:
            if record.process_status is not None and record.process_status.state == ProcessState.RUNNING \
                    and record.process_status.process == "hello":
                record.process_status.start_time = fork_time - 2
        rewrite(path, records)
    start = frames(task.runner)[running][1].process_status.start_time
    assert lines(task.verify().problems) == [
        "%s: record %d at byte %d: process hello: RUNNING goes back in time: start_time %.6f is 2.000 s "
        "before the fork_time of record %d" % (
            task.runner, running, offset_of(task.runner, running), start, forked)]


# ---- coordinators against the runner ---------------------------------------------------------------


def test_coordinator_disagreeing_with_the_runner(task):
    coordinator = task.coordinator("hello")
    records = task.records(coordinator)
    records[-1].process_status.return_code = 7
    rewrite(coordinator, records)
    success = find(task.runner, is_process("hello", ProcessState.SUCCESS))
    ours = records[-1].process_status
    assert lines(task.verify().problems) == [
        "%s: record 2 at byte %d: seq 3 disagrees with the runner checkpoint: SUCCESS(stop_time=%s, "
        "return_code=7) here, SUCCESS(stop_time=%s, return_code=0) in record %d at byte %d of %s" % (
            coordinator, offset_of(coordinator, 2), ours.stop_time, ours.stop_time, success,
            offset_of(task.runner, success), task.runner)]


def test_record_missing_from_the_coordinator(task):
    coordinator = task.coordinator("hello")
    rewrite(coordinator, task.records(coordinator)[:-1])
    success = find(task.runner, is_process("hello", ProcessState.SUCCESS))
    assert lines(task.verify().problems) == [
        "%s: record %d at byte %d: process hello: seq 3 (SUCCESS) is not in its coordinator checkpoint %s" % (
            task.runner, success, offset_of(task.runner, success), coordinator)]


def test_missing_coordinator_checkpoint(task):
    os.unlink(task.coordinator("hello"))
    forked = find(task.runner, is_process("hello", ProcessState.FORKED))
    assert lines(task.verify().problems) == [
        "%s: record %d at byte %d: process hello: 3 records written by its coordinators, but %s is "
        "missing" % (
            task.runner, forked, offset_of(task.runner, forked), task.coordinator("hello"))]


def test_coordinator_records_the_runner_never_copied(task):
    """The task ended, yet its coordinator recorded more than the runner has."""
    coordinator = task.coordinator("hello")
    records = task.records(coordinator)
    last = records[-1].process_status
    records.append(RunnerCkpt(process_status=ProcessStatus(
        seq=last.seq + 2, process="hello", state=ProcessState.FORKED, fork_time=last.stop_time,
        coordinator_pid=1)))
    rewrite(coordinator, records)
    assert lines(task.verify().problems) == [
        "%s: 1 record (seq 5) never reached the runner checkpoint, which says the task ended "
        "SUCCESS" % coordinator]


def test_a_live_runners_view_has_notes_only(task):
    """The runner checkpoint of a live task, read while hello's end is only in its coordinator's."""
    success = find(task.runner, is_process("hello", ProcessState.SUCCESS))
    records = [r for i, r in enumerate(task.records(task.runner))
               if i != success and (r.task_status is None or r.task_status.state == TaskState.ACTIVE)
               and not (r.process_status is not None and r.process_status.process == "hello"
                        and r.process_status.seq > 3)]
    rewrite(task.runner, records)
    tasks = os.path.join(task.root, "tasks")
    os.rename(os.path.join(tasks, "finished", "mixed"), os.path.join(tasks, "active", "mixed"))
    report = task.verify()
    assert report.consistent and report.task_state == TaskState.ACTIVE
    assert lines(report.notes) == [
        "%s: note: 1 record (seq 3) not yet copied into the runner checkpoint (the runner copies them as it "
        "reads this file)" % task.coordinator("hello")]


def test_runner_kill_racing_the_coordinators_own_end_is_a_note(task):
    """The runner recorded KILLED for a run whose coordinator recorded FAILED at the same seq."""
    records = task.records(task.runner)
    failed = find(task.runner, is_process("flaky", ProcessState.FAILED, seq=7))
    records[failed].process_status.state = ProcessState.KILLED
    records[failed].process_status.return_code = -1
    rewrite(task.runner, records)
    coordinator = task.coordinator("flaky")
    report = task.verify()
    assert report.consistent
    assert lines(report.notes) == [
        "%s: record 5 at byte %d: note: seq 7: the runner recorded KILLED (record %d at byte %d of %s) "
        "before it read this FAILED; the runner's record stands" % (
            coordinator, offset_of(coordinator, 5), failed, offset_of(task.runner, failed), task.runner)]


# ---- the task JSON -----------------------------------------------------------------------------------


def test_task_json_in_the_wrong_folder(task):
    finished = os.path.join(task.root, "tasks", "finished", "mixed")
    active = os.path.join(task.root, "tasks", "active", "mixed")
    os.rename(finished, active)
    assert lines(task.verify().problems) == [
        "%s: task JSON in tasks/active, but the runner checkpoint says the task is SUCCESS (it belongs in "
        "tasks/finished)" % active]


def test_task_json_missing(task):
    finished = os.path.join(task.root, "tasks", "finished", "mixed")
    os.unlink(finished)
    assert lines(task.verify().problems) == [
        "%s: task JSON missing: the task is SUCCESS, so it should be here" % finished]


def test_task_json_that_does_not_parse(task):
    finished = os.path.join(task.root, "tasks", "finished", "mixed")
    with open(finished, "w") as fp:
        fp.write('{"name": "mixed", ')
    (problem,) = task.verify().problems
    assert problem.path == finished and problem.message.startswith("task JSON does not parse: ")


def test_checkpoint_of_another_task(task):
    other = os.path.join(task.root, "checkpoints", "other")
    os.rename(task.dir, other)
    report = verify_task(other)
    header = next(i for i, (_, r) in enumerate(frames(os.path.join(other, "runner"))) if r.runner_header)
    assert lines(report.problems) == [
        "%s: record %d at byte %d: runner header names task 'mixed', but the checkpoint is that of "
        "'other'" % (
            os.path.join(other, "runner"), header, offset_of(os.path.join(other, "runner"), header)),
        "%s: task JSON missing: the task is SUCCESS, so it should be here" % os.path.join(
            task.root, "tasks", "finished", "other")]


def test_outside_a_root_the_task_json_is_not_checked(task, tmp_path):
    loose = str(tmp_path / "loose")
    shutil.copytree(task.dir, loose)
    report = verify_task(loose)
    assert report.consistent and report.task_id == "mixed"
    assert [(f.severity, f.message) for f in report.findings] == [
        (NOTE, "task JSON not checked: the directory is not laid out as ROOT/checkpoints/TASK_ID")]


# ---- rules that a real run cannot easily be bent into breaking ---------------------------------------


def runner_problems(tmp_path, records: list[RunnerCkpt]) -> list[str]:
    from thermos.common.verify import check_runner

    path = str(tmp_path / "runner")
    rewrite(path, records)
    with open(path, "rb") as fp:
        scan = scan_stream(fp.read(), path)
    assert scan.findings == []
    return [f.message for f in check_runner(scan.frames, path, "hello_world")[1]]


def test_stream_shape_rules(tmp_path):
    from thermos.testing import ckpt as synth

    run = synth.process_run("p", 0)
    # where the header stands is not a rule (Aurora's thrift comment and its runner disagree on it)
    assert runner_problems(tmp_path, [synth.header(), synth.task_status(TaskState.ACTIVE)] + run) == []
    assert runner_problems(tmp_path, [synth.task_status(TaskState.CLEANING), synth.header()]) == [
        "the first task status is CLEANING, not ACTIVE"]
    assert runner_problems(tmp_path, [synth.task_status(TaskState.ACTIVE)] + run) == [
        "no runner header (readers cannot rebuild the task without one)"]
    assert runner_problems(tmp_path, [synth.header()]) == [
        "no task status (a runner checkpoint starts with ACTIVE)"]
    assert runner_problems(tmp_path, [synth.task_status(TaskState.ACTIVE), synth.header(), RunnerCkpt(),
                                      RunnerCkpt(task_status=synth.task_status(0).task_status,
                                                 runner_header=synth.header().runner_header)]) == [
        "empty record (no member of RunnerCkpt is set)",
        "record sets runner_header and task_status at once (a RunnerCkpt holds one)"]


def test_process_rules(tmp_path):
    from thermos.testing import ckpt as synth

    start = [synth.task_status(TaskState.ACTIVE), synth.header()]
    waiting, forked, running, success = synth.process_run("p", 0)
    assert runner_problems(tmp_path, start + [forked]) == [
        "process p: first record is FORKED, not WAITING (seq 1)"]
    success.process_status.seq = 2
    assert runner_problems(tmp_path, start + [waiting, forked, success]) == [
        "process p: illegal transition FORKED -> SUCCESS (seq 2)"]
    running.process_status.pid = None
    assert runner_problems(tmp_path, start + [waiting, forked, running]) == [
        "process p: RUNNING record (seq 2) lacks pid"]
    again = synth.process_run("p", 1)[0]
    assert runner_problems(tmp_path, start + [waiting, again]) == [
        "process p: illegal transition WAITING -> WAITING (seq 1)"]


def test_a_coordinator_holds_only_its_own_process(task):
    coordinator = task.coordinator("hello")
    records = task.records(coordinator)
    records[0].process_status.process = "flaky"
    rewrite(coordinator, records)
    forked = find(task.runner, is_process("hello", ProcessState.FORKED))
    assert lines(task.verify().problems) == [
        "%s: record %d at byte %d: process hello: seq 1 (FORKED) is not in its coordinator checkpoint %s" % (
            task.runner, forked, offset_of(task.runner, forked), coordinator),
        "%s: record 0 at byte 0: record of process 'flaky' (seq 1) in the checkpoint of "
        "'hello'" % coordinator]
