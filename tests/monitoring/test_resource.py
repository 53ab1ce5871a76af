import os
import signal
import subprocess
import sys
import time

import pytest

from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt, TaskState
from thermos.monitoring.monitor import TaskMonitor
from thermos.monitoring.resource import (
    ProcessSample,
    ProcessTable,
    ProcessTreeCollector,
    ResourceHistory,
    ResourceSampler,
    TaskSample,
)
from thermos.testing import ckpt as synth
from thermos.testing.wait import wait_until as wait_for

BUSY = "import time\nend = time.time() + 60\nwhile time.time() < end: pass\n"




@pytest.fixture
def forking_process():
    """bash that forks two sleepers and one CPU-busy python, like a task process with children."""
    proc = subprocess.Popen(
        ["bash", "-c", "sleep 60 & sleep 60 & %s -c '%s' & wait" % (sys.executable, BUSY)],
        start_new_session=True,
    )
    try:
        wait_for(lambda: len(ProcessTable.snapshot().tree(proc.pid)) >= 4)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def running_task(root, task_id, pid, sandbox):
    path = os.path.join(root, "checkpoints", task_id, "runner")
    run = synth.process_run("busy", first_seq=0, pid=pid - 1)
    run[2] = RunnerCkpt(
        process_status=ProcessStatus(
            seq=2, process="busy", state=ProcessState.RUNNING, start_time=time.time(), pid=pid
        )
    )
    synth.write_stream(
        path, [synth.task_status(TaskState.ACTIVE), synth.header(task_id=task_id, sandbox=sandbox)] + run[:3]
    )
    return TaskMonitor(root, task_id)


def test_sampler_reports_the_whole_forked_tree(tmp_path, forking_process):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "blob").write_bytes(b"x" * 100_000)
    sampler = ResourceSampler(interval=1.0)
    sampler.add_task("t", running_task(str(tmp_path), "t", forking_process.pid, str(sandbox)))

    sampler.sweep()
    first = sampler.history("t")[-1].processes["busy"]
    # Wait until the busy grandchild has burnt measurable CPU, then sample again.
    wait_for(
        lambda: (
            sum(r.user + r.system for r in ProcessTable.snapshot().tree(forking_process.pid))
            >= first.user + first.system + 0.2
        )
    )
    sampler.sweep()
    _, result = sampler.sample("t")
    assert result.num_procs == 4  # bash, two sleeps, the busy python
    before, after = sampler.history("t")[-2:]
    b, a = before.processes["busy"], after.processes["busy"]
    expected = (a.user + a.system - b.user - b.system) / (after.timestamp - before.timestamp)
    assert result.process_sample.rate == pytest.approx(expected)  # the grandchild's CPU counts
    assert result.process_sample.rate > 0.0
    assert result.process_sample.rss > 4 * 1024 * 1024
    assert result.process_sample.threads >= 4
    assert result.process_sample.status is not None

    assert sampler.latest("t") == sampler.history("t")[-1]
    by_process = sampler.sample_by_process("t", "busy")
    assert by_process == sampler.history("t")[-1].processes["busy"]
    with pytest.raises(ValueError):
        sampler.sample_by_process("t", "nonexistent")


def test_sampler_disk_usage_and_off_switch(tmp_path, forking_process):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "blob").write_bytes(os.urandom(300_000))
    on = ResourceSampler(interval=1.0)
    off = ResourceSampler(interval=1.0, disk_collection=False)
    for sampler in (on, off):
        sampler.add_task("t", running_task(str(tmp_path), "t", forking_process.pid, str(sandbox)))
        sampler.sweep()
        sampler.sweep()
    assert on.sample("t")[1].disk_usage >= 300_000
    assert off.sample("t")[1].disk_usage == 0


def test_one_table_scan_serves_every_task(tmp_path, forking_process, monkeypatch):
    scans = []
    real = ProcessTable.snapshot.__func__

    def counting(cls):
        scans.append(1)
        return real(cls)

    monkeypatch.setattr(ProcessTable, "snapshot", classmethod(counting))
    sampler = ResourceSampler(interval=1.0, disk_collection=False)
    for i in range(20):
        sampler.add_task(
            "t%d" % i, running_task(str(tmp_path), "t%d" % i, forking_process.pid, "/nonexistent")
        )
    sampler.sweep()
    assert len(scans) == 1
    assert all(sampler.sample("t%d" % i)[1].num_procs == 4 for i in range(20))


def test_sampler_thread_starts_samples_and_stops_promptly(tmp_path, forking_process):
    sampler = ResourceSampler(interval=0.05, history=1.0)
    sampler.add_task("t", running_task(str(tmp_path), "t", forking_process.pid, str(tmp_path)))
    sampler.start()
    try:
        wait_for(lambda: len(sampler.history("t")) >= 3)
    finally:
        started = time.monotonic()
        sampler.stop()
        assert time.monotonic() - started < 2.0
    assert len(sampler.history("t")) <= 20  # bounded: 1 s of history at 0.05 s


def test_a_task_without_running_processes_samples_as_zero(tmp_path):
    sampler = ResourceSampler()
    synth.write_stream(os.path.join(str(tmp_path), "checkpoints", "done", "runner"), synth.runner_stream())
    sampler.add_task("done", TaskMonitor(str(tmp_path), "done"))
    timestamp, before = sampler.sample("done")
    assert before.num_procs == 0 and before.process_sample == ProcessSample.empty()
    sampler.sweep()
    assert sampler.sample("done")[1].num_procs == 0
    with pytest.raises(KeyError):
        sampler.sample("unknown")


def test_history_is_bounded_and_looked_up_by_time():
    history = ResourceHistory(3, initialize=False)
    for t in (1.0, 2.0, 3.0, 4.0):
        history.add(t, TaskSample(t))
    assert [when for when, _ in history] == [2.0, 3.0, 4.0]
    assert history.get(2.5)[0] == 3.0
    assert history.get(0)[0] == 2.0
    assert history.get(99) == (4.0, TaskSample(4.0))
    with pytest.raises(ValueError):
        history.add(3.5, TaskSample(3.5))


def test_history_length_is_limited():
    with pytest.raises(ValueError):
        ResourceSampler(interval=1.0, history=86400.0)
    assert ResourceSampler(interval=20.0, history=3600.0)._maxlen == 180


def test_process_sample_arithmetic_and_json():
    a = ProcessSample(rate=0.5, user=1.0, system=2.0, rss=10, vms=20, nice=0, status="running", threads=2)
    b = ProcessSample(rate=0.25, user=1.0, system=1.0, rss=5, vms=5, nice=None, status=None, threads=1)
    total = a + b
    assert (total.rate, total.user, total.rss, total.threads, total.nice, total.status) == (
        0.75,
        2.0,
        15,
        3,
        0,
        "running",
    )
    assert ProcessSample.empty() + a == a
    assert a.to_dict()["cpu"] == 0.5 and a.to_dict()["ram"] == 10


def test_tree_collector_on_a_vanished_pid_is_empty():
    collector = ProcessTreeCollector(2**22 + 12345)
    assert collector.sample() == ProcessSample.empty()
    assert collector.procs == 0


def test_process_table_matches_psutil_for_this_process():
    import psutil

    record = ProcessTable.snapshot().get(os.getpid())
    me = psutil.Process()
    assert record.ppid == me.ppid()
    assert abs(record.start - me.create_time()) < 0.05
    assert record.threads == me.num_threads()


def test_aurora_style_task_resource_monitors_share_one_sampler(tmp_path, forking_process):
    from thermos.monitoring.resource import TaskResourceMonitor

    sampler = ResourceSampler(interval=0.05, history=5.0, disk_collection=False)
    monitors = [TaskResourceMonitor("t%d" % i, running_task(str(tmp_path), "t%d" % i, forking_process.pid,
                                                            str(tmp_path)), sampler=sampler)
                for i in range(3)]
    try:
        for monitor in monitors:
            monitor.start()
        wait_for(lambda: all(m.sample()[1].num_procs == 4 for m in monitors))
        assert sum(1 for t in __import__("threading").enumerate() if t.name == "ResourceSampler") == 1
        assert monitors[0].sample_by_process("busy").threads >= 4
        monitors[0].kill()
        assert sampler.task_ids() == ["t1", "t2"]
    finally:
        sampler.stop()
