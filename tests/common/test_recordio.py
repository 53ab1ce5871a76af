import errno
import os
import struct

import pytest

from thermos.common.recordio import (
    MAXIMUM_RECORD_SIZE,
    RecordIO,
    ThriftRecordReader,
    ThriftRecordWriter,
)
from thermos.gen.thermos.ttypes import RunnerCkpt, TaskState
from thermos.testing import ckpt as samples


def write(path, records):
    samples.write_stream(str(path), records)


def read_all(path):
    with open(path, "rb") as fp:
        return list(ThriftRecordReader(fp, RunnerCkpt))


def test_round_trip(tmp_path):
    records = list(samples.runner_stream())
    write(tmp_path / "runner", records)
    assert read_all(tmp_path / "runner") == records


def test_worked_example_first_frame(tmp_path):
    """Spec §2.3: the first frame of a runner checkpoint, byte for byte."""
    path = tmp_path / "runner"
    write(path, [samples.task_status(TaskState.ACTIVE, timestamp_ms=0x0102030405060708,
                                     runner_pid=0x11223344, runner_uid=0)])
    data = path.read_bytes()
    assert len(data) == 41
    assert data[:4] == b"\x00\x00\x00\x25"
    assert data[4:7] == b"\x0c\x00\x03"
    assert data[7:14] == b"\x08\x00\x01\x00\x00\x00\x00"
    assert data[14:25] == b"\x0a\x00\x02\x01\x02\x03\x04\x05\x06\x07\x08"
    assert data[25:32] == b"\x08\x00\x03\x11\x22\x33\x44"
    assert data[32:39] == b"\x08\x00\x04\x00\x00\x00\x00"
    assert data[39:41] == b"\x00\x00"


def test_every_truncation_yields_the_whole_records_before_the_cut(tmp_path):
    records = list(samples.runner_stream(processes=2, runs=2))
    path = tmp_path / "runner"
    write(path, records)
    data = path.read_bytes()
    boundaries = []
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack(">L", data[offset:offset + 4])
        offset += 4 + length
        boundaries.append(offset)
    cut_path = tmp_path / "cut"
    for cut in range(len(data) + 1):
        cut_path.write_bytes(data[:cut])
        whole = sum(1 for end in boundaries if end <= cut)
        assert read_all(cut_path) == records[:whole], "cut at byte %d" % cut


def test_try_read_rewinds_over_a_torn_tail_and_sees_it_once_complete(tmp_path):
    record = samples.task_status(TaskState.ACTIVE)
    path = tmp_path / "runner"
    write(path, [record])
    frame = path.read_bytes()
    path.write_bytes(b"")
    with open(path, "ab") as writer, open(path, "rb") as fp:
        reader = ThriftRecordReader(fp, RunnerCkpt)
        assert reader.try_read() is None
        writer.write(frame[:3])
        writer.flush()
        assert reader.try_read() is None
        assert fp.tell() == 0
        writer.write(frame[3:20])
        writer.flush()
        assert reader.try_read() is None
        writer.write(frame[20:])
        writer.flush()
        assert reader.try_read() == record
        assert reader.try_read() is None


def test_read_raises_on_a_torn_tail_but_try_read_does_not(tmp_path):
    path = tmp_path / "runner"
    path.write_bytes(b"\x00\x00\x00\x10abc")
    with open(path, "rb") as fp:
        with pytest.raises(RecordIO.PrematureEndOfStream):
            ThriftRecordReader(fp, RunnerCkpt).read()


def test_impossible_length_names_file_and_offset(tmp_path):
    path = tmp_path / "runner"
    write(path, [samples.task_status(TaskState.ACTIVE)])
    good = path.stat().st_size
    with open(path, "ab") as fp:
        fp.write(struct.pack(">L", MAXIMUM_RECORD_SIZE + 1) + b"x" * 10)
    with pytest.raises(RecordIO.RecordSizeExceeded, match=r"runner at byte %d" % good):
        read_all(path)
    with open(path, "rb") as fp:
        reader = ThriftRecordReader(fp, RunnerCkpt)
        assert reader.read() is not None
        with pytest.raises(RecordIO.RecordSizeExceeded):
            reader.try_read()


def test_undecodable_record_followed_by_data_is_corruption(tmp_path):
    path = tmp_path / "runner"
    write(path, [samples.task_status(TaskState.ACTIVE)])
    bad_at = path.stat().st_size
    garbage = b"\x0c\x00\x03\x08\x00\x01"  # a struct that never ends
    with open(path, "ab") as fp:
        fp.write(struct.pack(">L", len(garbage)) + garbage)
    write(path, [samples.task_status(TaskState.SUCCESS)])
    with pytest.raises(RecordIO.CorruptRecord, match=r"at byte %d" % bad_at):
        read_all(path)
    with open(path, "rb") as fp:
        reader = ThriftRecordReader(fp, RunnerCkpt)
        reader.read()
        with pytest.raises(RecordIO.CorruptRecord):
            reader.try_read()


def test_undecodable_last_record_is_a_torn_tail(tmp_path):
    path = tmp_path / "runner"
    records = [samples.task_status(TaskState.ACTIVE)]
    write(path, records)
    garbage = b"\x0c\x00\x03\x08\x00\x01"
    with open(path, "ab") as fp:
        fp.write(struct.pack(">L", len(garbage)) + garbage)
    assert read_all(path) == records


def test_zero_filled_tail_is_a_torn_tail(tmp_path):
    path = tmp_path / "runner"
    records = list(samples.runner_stream(processes=1, runs=1))
    write(path, records)
    with open(path, "ab") as fp:
        fp.write(b"\x00" * 4096)
    assert read_all(path) == records


def test_iteration_does_not_move_the_readers_position(tmp_path):
    path = tmp_path / "runner"
    records = list(samples.runner_stream(processes=1, runs=1))
    write(path, records)
    with open(path, "rb") as fp:
        reader = ThriftRecordReader(fp, RunnerCkpt)
        first = reader.read()
        assert list(reader) == records
        assert reader.read() == records[1]
        assert first == records[0]


def test_mode_checks(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"")
    with open(path, "ab") as fp, pytest.raises(RecordIO.InvalidTypeException):
        ThriftRecordReader(fp, RunnerCkpt)
    with open(path, "rb") as fp, pytest.raises(RecordIO.InvalidTypeException):
        ThriftRecordWriter(fp)
    with open(path, "a+b") as fp:
        ThriftRecordReader(fp, RunnerCkpt)
        ThriftRecordWriter(fp)


def test_failed_sync_write_raises_and_cuts_the_partial_frame(tmp_path, monkeypatch):
    path = tmp_path / "runner"
    write(path, [samples.task_status(TaskState.ACTIVE)])
    good = path.read_bytes()
    real_write = os.write
    calls = {"n": 0}

    def short_then_enospc(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[:5]))
        raise OSError(errno.ENOSPC, "No space left on device")

    with open(path, "a+b") as fp:
        writer = ThriftRecordWriter(fp)
        writer.set_sync(True)
        monkeypatch.setattr(os, "write", short_then_enospc)
        with pytest.raises(RecordIO.WriteError, match="No space left") as err:
            writer.write(samples.task_status(TaskState.SUCCESS))
        monkeypatch.setattr(os, "write", real_write)
        assert err.value.errno == errno.ENOSPC
        assert path.read_bytes() == good
        writer.write(samples.task_status(TaskState.KILLED))
    assert [r.task_status.state for r in read_all(path)] == [TaskState.ACTIVE, TaskState.KILLED]


def test_unwritable_file_raises_write_error(tmp_path):
    path = tmp_path / "runner"
    path.write_bytes(b"")
    fp = open(path, "rb")
    fp.mode  # noqa: B018 - read-only handles are refused up front
    with pytest.raises(RecordIO.InvalidTypeException):
        ThriftRecordWriter(fp)
    fp.close()
    with open("/dev/full", "ab") as full:
        writer = ThriftRecordWriter(full)
        writer.set_sync(True)
        with pytest.raises(RecordIO.WriteError):
            writer.write(samples.task_status(TaskState.ACTIVE))


def test_text_mode_handles_are_read_as_bytes(tmp_path):
    """Aurora-era scripts do `open(path, 'r')`; the records still come out intact."""
    records = list(samples.runner_stream(processes=1, runs=1))
    write(tmp_path / "runner", records)
    with open(tmp_path / "runner") as fp:
        assert list(ThriftRecordReader(fp, RunnerCkpt)) == records
