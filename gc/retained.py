"""The GC executor's message, `AdjustRetainedTasks { 2: map<string, ScheduleStatus> retainedTasks }`.

Read and written with thrift's binary protocol directly instead of through `thermos.gen.aurora.ttypes`:
importing that module (the whole Aurora API subset) costs the executor about 7 MB of its 30 MB
budget, for one map. The wire format is the IDL's (thermos/gen/aurora.thrift), and the tests check
both directions against the generated struct; `ScheduleStatus` mirrors the IDL's enum the same way.
"""

from __future__ import annotations

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TType
from thrift.transport.TTransport import TMemoryBuffer


class ScheduleStatus:
    """Aurora's task states as the scheduler sees them (values of the IDL enum)."""

    PENDING = 0
    STARTING = 1
    RUNNING = 2
    FINISHED = 3
    FAILED = 4
    KILLED = 5
    KILLING = 6
    LOST = 7
    ASSIGNED = 9
    INIT = 11
    RESTARTING = 12
    PREEMPTING = 13
    THROTTLED = 16
    DRAINING = 17
    PARTITIONED = 18

    _VALUES_TO_NAMES = {value: name for name, value in list(vars().items()) if name.isupper()}


TERMINAL_STATES = frozenset((ScheduleStatus.FAILED, ScheduleStatus.FINISHED, ScheduleStatus.KILLED,
                             ScheduleStatus.LOST))

_RETAINED_TASKS = 2


class BadRequest(ValueError):
    """Not an AdjustRetainedTasks; the message says why in one line."""


def decode(data: bytes) -> dict[str, int]:
    """The retainedTasks map of a TBinaryProtocol AdjustRetainedTasks."""
    proto = TBinaryProtocol(TMemoryBuffer(data), strictRead=False)
    retained: dict[str, int] | None = None
    try:
        proto.readStructBegin()
        while True:
            _, ftype, fid = proto.readFieldBegin()
            if ftype == TType.STOP:
                break
            if fid == _RETAINED_TASKS and ftype == TType.MAP:
                ktype, vtype, size = proto.readMapBegin()
                if (ktype, vtype) != (TType.STRING, TType.I32) or size < 0 or size > len(data):
                    raise BadRequest("retainedTasks must map task ids to ScheduleStatus values")
                retained = {}
                for _ in range(size):
                    task_id = proto.readString()
                    retained[task_id] = proto.readI32()
                proto.readMapEnd()
            else:
                proto.skip(ftype)
            proto.readFieldEnd()
        proto.readStructEnd()
    except BadRequest:
        raise
    except Exception as err:  # noqa: BLE001 - thrift raises many types on garbage
        raise BadRequest("not an AdjustRetainedTasks: %s" % (err or type(err).__name__)) from None
    if retained is None:
        raise BadRequest("AdjustRetainedTasks without retainedTasks")
    unknown = sorted({v for v in retained.values() if v not in ScheduleStatus._VALUES_TO_NAMES})
    if unknown:
        raise BadRequest("retainedTasks holds unknown ScheduleStatus values %s" % unknown)
    return retained


def encode(retained: dict[str, int]) -> bytes:
    buf = TMemoryBuffer()
    proto = TBinaryProtocol(buf)
    proto.writeStructBegin("AdjustRetainedTasks")
    proto.writeFieldBegin("retainedTasks", TType.MAP, _RETAINED_TASKS)
    proto.writeMapBegin(TType.STRING, TType.I32, len(retained))
    for task_id, status in retained.items():
        proto.writeString(task_id)
        proto.writeI32(status)
    proto.writeMapEnd()
    proto.writeFieldEnd()
    proto.writeFieldStop()
    proto.writeStructEnd()
    return buf.getvalue()
