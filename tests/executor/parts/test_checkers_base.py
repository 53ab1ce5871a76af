"""Precedence, latching and kill semantics of the status-checker chain (spec §1.3)."""

import pytest
from thermos.executor.checkers.base import (
    TASK_FAILED,
    TASK_FINISHED,
    TASK_KILLED,
    TASK_RUNNING,
    TASK_STARTING,
    ChainedStatusChecker,
    StatusChecker,
    StatusResult,
)
from thermos.executor.checkers.kill import KillManager


class Fixed(StatusChecker):
    def __init__(self, result=None):
        self.result = result
        self.calls = []

    @property
    def status(self):
        return self.result

    def start(self):
        self.calls.append("start")

    def stop(self):
        self.calls.append("stop")


def running(reason="r"):
    return StatusResult(reason, TASK_RUNNING)


def test_no_opinions_is_none():
    assert ChainedStatusChecker([Fixed(), Fixed()]).status is None
    assert ChainedStatusChecker([]).status is None


def test_starting_beats_running_and_first_running_reason_wins():
    starting = StatusResult(None, TASK_STARTING)
    assert ChainedStatusChecker([Fixed(running("a")), Fixed(starting)]).status == starting
    assert ChainedStatusChecker([Fixed(running("a")), Fixed(running("b"))]).status == running("a")


def test_terminal_wins_and_is_latched():
    health = Fixed(StatusResult("Failed health check! boom", TASK_FAILED))
    chain = ChainedStatusChecker([Fixed(running()), health])
    assert chain.status == StatusResult("Failed health check! boom", TASK_FAILED)
    health.result = running()
    assert chain.status.status == TASK_FAILED


def test_first_terminal_in_order_wins():
    killed, failed = StatusResult("k", TASK_KILLED), StatusResult("f", TASK_FAILED)
    chain = ChainedStatusChecker([Fixed(killed), Fixed(failed)])
    assert chain.status == StatusResult("k", TASK_KILLED)


def test_non_result_is_a_type_error():
    with pytest.raises(TypeError):
        ChainedStatusChecker([Fixed(TASK_RUNNING)]).status  # noqa: B018


def test_status_result_rejects_unknown_states():
    with pytest.raises(ValueError):
        StatusResult("x", "RUNNING")
    assert StatusResult("done", TASK_FINISHED).terminal
    assert not running().terminal


def test_start_and_stop_reach_every_checker_even_if_one_fails():
    class Broken(Fixed):
        def stop(self):
            raise RuntimeError("stop failed")

    a, b = Broken(), Fixed()
    chain = ChainedStatusChecker([a, b])
    chain.start()
    with pytest.raises(RuntimeError):
        chain.stop()
    assert b.calls == ["start", "stop"]


def test_kill_manager_keeps_the_first_reason():
    kill = KillManager()
    assert kill.status is None and kill.name == "kill_manager"
    kill.kill("Instructed to kill task.")
    kill.kill("Told to shut down executor.")
    assert kill.status == StatusResult("Instructed to kill task.", TASK_KILLED)


def test_default_name_is_the_class_name():
    assert Fixed().name == "Fixed"
