"""The hand-read AdjustRetainedTasks is byte-compatible with the IDL's generated struct."""

import pytest
from thermos.gc import retained
from thrift.TSerialization import deserialize, serialize

from thermos.gen.aurora import constants, ttypes

TASKS = {"a": ttypes.ScheduleStatus.RUNNING, "b": ttypes.ScheduleStatus.FINISHED, "\u00e9t\u00e9": 9}


def test_round_trips_with_the_generated_struct():
    assert deserialize(ttypes.AdjustRetainedTasks(), retained.encode(TASKS)).retainedTasks == TASKS
    assert retained.decode(serialize(ttypes.AdjustRetainedTasks(retainedTasks=TASKS))) == TASKS
    assert retained.decode(serialize(ttypes.AdjustRetainedTasks(retainedTasks={}))) == {}


def test_schedule_status_mirrors_the_idl():
    assert retained.ScheduleStatus._VALUES_TO_NAMES == ttypes.ScheduleStatus._VALUES_TO_NAMES
    assert retained.TERMINAL_STATES == constants.TERMINAL_STATES


@pytest.mark.parametrize("data, message", [
    (b"", "not an AdjustRetainedTasks"),
    (b"\x0d\x00\x02\x0b\x08\xff\xff\xff\xff", "not an AdjustRetainedTasks"),
    (b"\x00", "AdjustRetainedTasks without retainedTasks"),
    (serialize(ttypes.AdjustRetainedTasks(retainedTasks={"a": 99})), "unknown ScheduleStatus values [99]"),
    (b"\x0d\x00\x02\x08\x08\x00\x00\x00\x01", "must map task ids to ScheduleStatus values"),
])
def test_bad_data_is_one_line(data, message):
    with pytest.raises(retained.BadRequest) as err:
        retained.decode(data)
    assert message in str(err.value) and "\n" not in str(err.value)
