import itertools

import pytest

from thermos.common.ckpt import (
    CheckpointDispatcher,
    ProcessStateHandler,
    TaskStateHandler,
    UniversalStateHandler,
)
from thermos.gen.thermos.ttypes import (
    ProcessState,
    ProcessStatus,
    RunnerCkpt,
    RunnerState,
    TaskState,
)
from thermos.testing import ckpt as samples

S = ProcessState
FIELDS = {
    S.WAITING: {},
    S.FORKED: {"fork_time": 1.0, "coordinator_pid": 10},
    S.RUNNING: {"start_time": 2.0, "pid": 11},
    S.SUCCESS: {"stop_time": 3.0, "return_code": 0},
    S.FAILED: {"stop_time": 3.0, "return_code": 1},
    S.KILLED: {"stop_time": 3.0, "return_code": -9},
    S.LOST: {},
}
PATHS = {  # shortest record sequence that reaches each state
    S.WAITING: [S.WAITING],
    S.FORKED: [S.WAITING, S.FORKED],
    S.RUNNING: [S.WAITING, S.FORKED, S.RUNNING],
}
VALID = {
    (None, S.WAITING), (S.WAITING, S.FORKED), (S.FORKED, S.RUNNING), (S.RUNNING, S.SUCCESS),
    (S.WAITING, S.FAILED), (S.RUNNING, S.FAILED), (S.FORKED, S.KILLED), (S.RUNNING, S.KILLED),
    (S.FORKED, S.LOST), (S.RUNNING, S.LOST),
}


def rec(state, seq, name="p", **kw):
    fields = dict(FIELDS[state])
    fields.update(kw)
    return RunnerCkpt(process_status=ProcessStatus(seq=seq, process=name, state=state, **fields))


def replay(states, dispatcher=None, name="p", state=None):
    dispatcher = dispatcher or CheckpointDispatcher()
    state = state or RunnerState(processes={})
    for seq, s in enumerate(states):
        dispatcher.dispatch(state, rec(s, seq, name=name))
    return state


@pytest.mark.parametrize("prev,new", list(itertools.product(list(PATHS), list(FIELDS))))
def test_process_transitions(prev, new):
    state = replay(PATHS[prev])
    update = rec(new, len(PATHS[prev]))
    if (prev, new) in VALID:
        CheckpointDispatcher().dispatch(state, update)
        run = state.processes["p"][-1]
        assert run.state == new
        for field, value in FIELDS[new].items():
            assert getattr(run, field) == value
    elif new == S.WAITING:
        with pytest.raises(CheckpointDispatcher.InvalidStateTransition, match="still"):
            CheckpointDispatcher().dispatch(state, update)
    else:
        with pytest.raises(CheckpointDispatcher.ErrorRecoveringState, match="invalid state transition"):
            CheckpointDispatcher().dispatch(state, update)


@pytest.mark.parametrize("terminal", [S.SUCCESS, S.FAILED, S.KILLED, S.LOST])
def test_nothing_follows_a_terminal_run_but_waiting(terminal):
    path = [S.WAITING, S.FORKED, S.RUNNING, terminal]
    state = replay(path)
    for new in FIELDS:
        if new == S.WAITING:
            continue
        with pytest.raises(CheckpointDispatcher.ErrorRecoveringState):
            CheckpointDispatcher().dispatch(state, rec(new, 4))
    CheckpointDispatcher().dispatch(state, rec(S.WAITING, 4))
    assert len(state.processes["p"]) == 2


def test_failed_run_keeps_stop_time_and_return_code():
    """Aurora dropped these for FAILED runs (spec §3.5 Bug); Thermos keeps them."""
    state = replay([S.WAITING, S.FORKED, S.RUNNING, S.FAILED])
    run = state.processes["p"][0]
    assert (run.stop_time, run.return_code) == (3.0, 1)


def test_waiting_to_failed_without_return_code():
    state = RunnerState(processes={})
    d = CheckpointDispatcher()
    d.dispatch(state, rec(S.WAITING, 0))
    d.dispatch(state, RunnerCkpt(process_status=ProcessStatus(seq=1, process="p", state=S.FAILED)))
    assert state.processes["p"][0].state == S.FAILED
    assert state.processes["p"][0].return_code is None


def test_missing_required_field_is_a_typed_error():
    state = replay([S.WAITING])
    with pytest.raises(CheckpointDispatcher.InvalidStateTransition, match="lacks fork_time"):
        CheckpointDispatcher().dispatch(state, RunnerCkpt(process_status=ProcessStatus(
            seq=1, process="p", state=S.FORKED, coordinator_pid=3)))


def test_sequence_numbers():
    state = replay([S.WAITING, S.FORKED])
    d = CheckpointDispatcher()
    with pytest.raises(CheckpointDispatcher.InvalidSequenceNumber):
        d.dispatch(state, rec(S.RUNNING, 5))
    with pytest.raises(CheckpointDispatcher.InvalidSequenceNumber):
        d.dispatch(state, rec(S.FORKED, 1))
    # recovery skips records already applied (or from the future) without touching the state
    d.dispatch(state, rec(S.FORKED, 1), recovery=True)
    d.dispatch(state, rec(S.RUNNING, 5), recovery=True)
    assert state.processes["p"][-1].state == S.FORKED
    d.dispatch(state, rec(S.RUNNING, 2), recovery=True)
    assert state.processes["p"][-1].state == S.RUNNING


def test_seq_continues_across_runs():
    state = replay([S.WAITING, S.FORKED, S.RUNNING, S.FAILED, S.WAITING, S.FORKED])
    runs = state.processes["p"]
    assert [r.seq for r in runs] == [3, 5]
    assert [r.state for r in runs] == [S.FAILED, S.FORKED]


def test_first_record_of_a_process_must_be_waiting():
    with pytest.raises(CheckpointDispatcher.ErrorRecoveringState, match="out of order"):
        CheckpointDispatcher().dispatch(RunnerState(processes={}), rec(S.FORKED, 1))


def test_header_rebinding():
    state = RunnerState(processes={})
    d = CheckpointDispatcher()
    d.dispatch(state, samples.header())
    with pytest.raises(CheckpointDispatcher.ErrorRecoveringState, match="rebind"):
        d.dispatch(state, samples.header(task_id="other"))
    assert state.header.task_id == "hello_world"


def test_empty_record():
    with pytest.raises(CheckpointDispatcher.ErrorRecoveringState, match="Empty"):
        CheckpointDispatcher().dispatch(RunnerState(processes={}), RunnerCkpt())


def test_task_status_is_not_validated_and_truncate_keeps_only_the_last():
    state = RunnerState(processes={})
    d = CheckpointDispatcher()
    for s in (TaskState.ACTIVE, TaskState.SUCCESS, TaskState.ACTIVE):
        d.dispatch(state, samples.task_status(s))
    assert [s.state for s in state.statuses] == [TaskState.ACTIVE, TaskState.SUCCESS, TaskState.ACTIVE]
    d.dispatch(state, samples.task_status(TaskState.KILLED), truncate=True)
    assert [s.state for s in state.statuses] == [TaskState.KILLED]


def test_handler_dispatch_order():
    calls = []

    class U(UniversalStateHandler):
        def __init__(self, tag):
            self.tag = tag

        def on_process_transition(self, state, update):
            calls.append((self.tag, "process", state))

        def on_task_transition(self, state, update):
            calls.append((self.tag, "task", state))

        def on_initialization(self, header):
            calls.append((self.tag, "init"))

    class P(ProcessStateHandler):
        def __init__(self, tag):
            self.tag = tag

        def on_waiting(self, update):
            calls.append((self.tag, "waiting"))

    class T(TaskStateHandler):
        def on_active(self, update):
            calls.append(("t", "active"))

    d = CheckpointDispatcher()
    for h in (P("p1"), U("u1"), T(), P("p2"), U("u2")):
        d.register_handler(h)
    with pytest.raises(CheckpointDispatcher.InvalidHandler):
        d.register_handler(object())
    state = RunnerState(processes={})
    d.dispatch(state, samples.task_status(TaskState.ACTIVE))
    d.dispatch(state, samples.header())
    d.dispatch(state, rec(S.WAITING, 0))
    assert calls == [
        ("u1", "task", TaskState.ACTIVE), ("u2", "task", TaskState.ACTIVE), ("t", "active"),
        ("u1", "init"), ("u2", "init"),
        ("u1", "process", S.WAITING), ("u2", "process", S.WAITING), ("p1", "waiting"), ("p2", "waiting"),
    ]


def test_would_update():
    state = replay([S.WAITING, S.FORKED])
    assert not CheckpointDispatcher.would_update(state, samples.task_status(TaskState.ACTIVE))
    assert CheckpointDispatcher.would_update(state, rec(S.WAITING, 0, name="other"))
    assert CheckpointDispatcher.would_update(state, rec(S.RUNNING, 2))
    assert not CheckpointDispatcher.would_update(state, rec(S.FORKED, 1))


def test_from_file_and_iterators(tmp_path):
    path = str(tmp_path / "runner")
    samples.write_stream(path, samples.runner_stream(processes=2, runs=3))
    state = CheckpointDispatcher.from_file(path)
    assert state.header.task_id == "hello_world"
    assert [s.state for s in state.statuses] == [
        TaskState.ACTIVE, TaskState.CLEANING, TaskState.FINALIZING, TaskState.SUCCESS]
    assert sorted(state.processes) == ["process_0", "process_1"]
    assert [r.state for r in state.processes["process_0"]] == [S.FAILED, S.FAILED, S.SUCCESS]
    assert [s.state for s in CheckpointDispatcher.iter_statuses(path)][-1] == TaskState.SUCCESS
    assert len(list(CheckpointDispatcher.iter_updates(path))) == 2 + 2 * 3 * 4 + 3


def test_from_file_keeps_the_valid_prefix_of_a_torn_checkpoint(tmp_path):
    path = tmp_path / "runner"
    samples.write_stream(str(path), samples.runner_stream(processes=1, runs=1, finished=False))
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    state = CheckpointDispatcher.from_file(str(path))
    assert state is not None
    assert state.processes["process_0"][-1].state == S.RUNNING


def test_from_file_returns_none_for_a_missing_or_inconsistent_file(tmp_path):
    assert CheckpointDispatcher.from_file(str(tmp_path / "missing")) is None
    path = str(tmp_path / "runner")
    samples.write_stream(path, [samples.header(), samples.header()])
    assert CheckpointDispatcher.from_file(path) is None
    with pytest.raises(CheckpointDispatcher.ErrorRecoveringState):
        list(CheckpointDispatcher.iter_updates(str(tmp_path / "missing")))


def test_legacy_stream_replays(tmp_path):
    """Header without log_dir/uid, and ACTIVE straight to SUCCESS (Aurora's older runners)."""
    legacy_header = samples.header()
    legacy_header.runner_header.log_dir = None
    legacy_header.runner_header.uid = None
    path = str(tmp_path / "runner")
    samples.write_stream(path, [samples.task_status(TaskState.ACTIVE), legacy_header,
                                *samples.process_run("hello", 0),
                                samples.task_status(TaskState.SUCCESS)])
    state = CheckpointDispatcher.from_file(path)
    assert state.header.log_dir is None and state.header.uid is None
    assert [s.state for s in state.statuses] == [TaskState.ACTIVE, TaskState.SUCCESS]
    assert state.processes["hello"][0].state == S.SUCCESS
