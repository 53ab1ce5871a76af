"""Property-based fuzzing of the reader and dispatcher: only typed errors may escape."""

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.recordio import RecordIO, ThriftRecordReader
from thermos.gen.thermos.ttypes import RunnerCkpt, RunnerState
from thermos.testing import ckpt as samples


def sample_bytes() -> bytes:
    buf = io.BytesIO()
    from thermos.common.recordio import ThriftRecordWriter
    writer = ThriftRecordWriter(buf)
    for record in samples.runner_stream(processes=2, runs=2):
        writer.write(record)
    return buf.getvalue()


SAMPLE = sample_bytes()


def replay_bytes(data: bytes) -> None:
    fp = io.BytesIO(data)
    fp.name = "fuzz"
    fp.fileno = None  # BytesIO has no descriptor: exercise read()/try_read() instead of iteration
    reader = ThriftRecordReader(fp, RunnerCkpt)
    state = RunnerState(processes={})
    dispatcher = CheckpointDispatcher()
    while True:
        try:
            record = reader.try_read()
        except RecordIO.Error:
            return
        if record is None:
            return
        try:
            dispatcher.dispatch(state, record)
        except CheckpointDispatcher.Error:
            return


def replay_file(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "runner"
    path.write_bytes(data)
    try:
        CheckpointDispatcher.from_file(str(path))
        for _ in CheckpointDispatcher.iter_updates(str(path)):
            pass
    except CheckpointDispatcher.Error:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=512))
def test_random_bytes(tmp_path_factory, data):
    replay_bytes(data)
    replay_file(tmp_path_factory, data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_streams(tmp_path_factory, mutations):
    data = bytearray(SAMPLE)
    for offset, value in mutations:
        data[offset] = value
    replay_bytes(bytes(data))
    replay_file(tmp_path_factory, bytes(data))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, len(SAMPLE)), st.integers(0, len(SAMPLE)), st.binary(max_size=64))
def test_spliced_streams(tmp_path_factory, start, end, insert):
    data = SAMPLE[:start] + insert + SAMPLE[end:]
    replay_bytes(data)
    replay_file(tmp_path_factory, data)
