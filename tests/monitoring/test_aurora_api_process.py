"""`thermos.monitoring.process` and `process_collector_psutil`, used as Aurora code uses them."""

import os
import signal
import subprocess
import sys

import psutil
import pytest

from thermos.monitoring import process_collector_psutil
from thermos.monitoring.process import ProcessSample
from thermos.monitoring.process_collector_psutil import ProcessTable, ProcessTreeCollector, process_to_sample
from thermos.testing.wait import wait_until

BUSY = "import time\nend = time.time() + 60\nwhile time.time() < end: pass\n"


@pytest.fixture
def tree():
    """bash with two sleeping children and one CPU-busy python: four processes."""
    script = "sleep 60 & sleep 60 & %s -c '%s' & wait" % (sys.executable, BUSY)
    proc = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    try:
        wait_until(lambda: len(ProcessTable.snapshot().tree(proc.pid)) >= 4)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_process_sample_is_aurora_s_named_tuple():
    sample = ProcessSample(0.5, 1.0, 2.0, 10, 20, 0, "running", 2)  # positional, in Aurora's order
    rate, user, system, rss, vms, nice, status, threads = sample
    assert (rate, user, system, rss, vms, nice, status, threads) == (0.5, 1.0, 2.0, 10, 20, 0, "running", 2)
    assert sample._fields == ("rate", "user", "system", "rss", "vms", "nice", "status", "threads")
    assert sample._replace(rate=0.0).rate == 0.0
    assert ProcessSample.empty() == ProcessSample(rate=0, user=0, system=0, rss=0, vms=0, nice=None,
                                                  status=None, threads=0)


def test_process_sample_sums_and_keeps_the_right_hand_nice_and_status():
    a = ProcessSample(rate=0.5, user=1.0, system=2.0, rss=10, vms=20, nice=0, status="running", threads=2)
    b = ProcessSample(rate=0.25, user=1.0, system=1.0, rss=5, vms=5, nice=None, status=None, threads=1)
    c = ProcessSample(rate=0, user=0, system=0, rss=0, vms=0, nice=5, status="sleeping", threads=0)
    assert a + b == ProcessSample(0.75, 2.0, 3.0, 15, 25, 0, "running", 3)
    assert (a + c).nice == 5 and (a + c).status == "sleeping"
    assert sum([a, b, c], ProcessSample.empty()) == ProcessSample(0.75, 2.0, 3.0, 15, 25, 5, "sleeping", 3)
    assert ProcessSample.empty() + a == a


def test_process_sample_to_dict_is_the_observer_json():
    sample = ProcessSample(0.5, 1.0, 2.0, 10, 20, 0, "running", 2)
    assert sample.to_dict() == dict(cpu=0.5, ram=10, user=1.0, system=2.0, rss=10, vms=20, nice=0,
                                    status="running", threads=2)
    assert ProcessSample.empty().to_dict()["status"] == "None"


def test_process_tree_collector_of_no_pid_is_empty():
    """Aurora's test builds `ProcessTreeCollector(None)`; sampling it gives the empty sample."""
    collector = ProcessTreeCollector(None)
    collector.sample()
    assert collector.value == ProcessSample.empty()
    assert collector.procs == 0


@pytest.mark.parametrize("error", [psutil.Error, IOError])
def test_errors_while_sampling_give_the_empty_sample(tree, monkeypatch, error):
    collector = ProcessTreeCollector(tree.pid)
    collector.sample()
    assert collector.procs == 4

    def failing_snapshot(cls):
        raise error("process table unreadable")

    monkeypatch.setattr(ProcessTable, "snapshot", classmethod(failing_snapshot))
    collector.sample()
    assert collector.value == ProcessSample.empty()
    assert collector.procs == 0


def test_process_tree_collector_sums_the_tree_and_measures_the_rate(tree):
    collector = ProcessTreeCollector(tree.pid)
    first = collector.sample()
    assert collector.value == first and first.rate == 0.0  # a rate needs two samples
    assert collector.procs == 4
    assert first.threads >= 4 and first.rss > 4 * 1024 * 1024 and first.status is not None
    wait_until(lambda: sum(r.user + r.system for r in ProcessTable.snapshot().tree(tree.pid))
               >= first.user + first.system + 0.2)
    second = collector.sample()
    assert second.rate > 0.0  # the busy grandchild's CPU counts
    assert second.user + second.system > first.user + first.system


def test_process_to_sample_of_a_live_and_a_gone_process(tree):
    sample = process_to_sample(psutil.Process(tree.pid))
    assert sample.threads == 1 and sample.rss > 0 and sample.status in (psutil.STATUS_SLEEPING,
                                                                        psutil.STATUS_RUNNING)
    gone = psutil.Process(tree.pid)
    os.killpg(tree.pid, signal.SIGKILL)
    tree.wait(10)
    assert process_to_sample(gone) == ProcessSample.empty()


def test_the_collector_module_is_the_one_resource_uses():
    from thermos.monitoring import resource

    assert resource.ProcessTreeCollector is process_collector_psutil.ProcessTreeCollector
    assert resource.ProcessSample is ProcessSample
