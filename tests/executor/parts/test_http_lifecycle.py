"""Graceful stop: POSTs reach a real local server in order, waits are bounded (spec §1.6)."""

import threading

from thermos.executor.http_lifecycle import escalation, graceful_shutdown
from thermos.executor.task_info import HttpLifecycleSpec

from tests.executor.parts.servers import RecordingServer, free_port


def spec(port, graceful=5.0, shutdown=5.0):
    return HttpLifecycleSpec(port=port, graceful_shutdown_endpoint="/quitquitquit",
                             graceful_shutdown_wait_secs=graceful, shutdown_endpoint="/abortabortabort",
                             shutdown_wait_secs=shutdown)


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_escalation_order():
    assert escalation(spec(31337)) == [("/quitquitquit", 5.0), ("/abortabortabort", 5.0)]


def test_task_that_quits_on_quitquitquit_gets_no_abort():
    ended = threading.Event()
    with RecordingServer({"/quitquitquit": (200, "bye")}) as server:
        server.on_request = lambda method, path: ended.set()
        assert graceful_shutdown(spec(server.port), ended.is_set, host="127.0.0.1")
        assert server.requests == [("POST", "/quitquitquit", b"")]


def test_handled_but_ignored_escalates_after_each_wait():
    fake = FakeTime()
    with RecordingServer({"/quitquitquit": (200, ""), "/abortabortabort": (503, "no")}) as server:
        assert not graceful_shutdown(spec(server.port, graceful=2.0, shutdown=1.0), lambda: False,
                                     host="127.0.0.1", poll_interval_secs=0.5, clock=fake.clock,
                                     sleep=fake.sleep)
        # Any HTTP status (even 503) counts as handled and is waited on.
        assert [r[:2] for r in server.requests] == [("POST", "/quitquitquit"), ("POST", "/abortabortabort")]
    assert fake.now == 3.0 and max(fake.sleeps) == 0.5


def test_abort_is_sent_only_after_the_graceful_wait():
    fake = FakeTime()
    seen_at = {}
    with RecordingServer() as server:
        server.on_request = lambda method, path: seen_at.setdefault(path, fake.now)
        graceful_shutdown(spec(server.port, graceful=3.0, shutdown=0.0), lambda: False, host="127.0.0.1",
                          clock=fake.clock, sleep=fake.sleep)
    assert seen_at == {"/quitquitquit": 0.0, "/abortabortabort": 3.0}


def test_unreachable_port_moves_on_at_once():
    fake = FakeTime()
    assert not graceful_shutdown(spec(free_port()), lambda: False, host="127.0.0.1", clock=fake.clock,
                                 sleep=fake.sleep)
    assert fake.now == 0.0


def test_deadline_bounds_the_whole_escalation():
    fake = FakeTime()
    with RecordingServer() as server:
        graceful_shutdown(spec(server.port, graceful=5.0, shutdown=5.0), lambda: False, deadline=2.0,
                          host="127.0.0.1", clock=fake.clock, sleep=fake.sleep)
        assert [r[1] for r in server.requests] == ["/quitquitquit"]
    assert fake.now == 2.0


def test_already_terminated_sends_nothing():
    with RecordingServer() as server:
        assert graceful_shutdown(spec(server.port), lambda: True, host="127.0.0.1")
        assert server.requests == []
