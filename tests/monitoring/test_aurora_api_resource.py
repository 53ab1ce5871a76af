"""`thermos.monitoring.resource` called as Aurora's tests and observer call it, on real processes."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.monitoring.containers_agent import ContainersAgent, container
from thermos.gen.thermos.ttypes import ProcessState, ProcessStatus, RunnerCkpt, TaskState
from thermos.monitoring.disk import DiskCollectorSettings, DuDiskCollector, MesosDiskCollector
from thermos.monitoring.monitor import TaskMonitor
from thermos.monitoring.process import ProcessSample
from thermos.monitoring.process_collector_psutil import ProcessTable
from thermos.monitoring.resource import (
    DiskCollectorProvider,
    HistoryProvider,
    NullTaskResourceMonitor,
    ResourceHistory,
    ResourceMonitorBase,
    ResourceSampler,
    TaskResourceMonitor,
)
from thermos.testing import ckpt as synth
from thermos.testing.wait import wait_until

BUSY = "import time\nend = time.time() + 60\nwhile time.time() < end: pass\n"


def spawn(script):
    return subprocess.Popen(["bash", "-c", script], start_new_session=True)


@pytest.fixture
def trees():
    """Two real process trees: `busy` (bash, two sleeps, a CPU-busy python) and `idle` (bash, a sleep)."""
    busy = spawn("sleep 60 & sleep 60 & %s -c '%s' & wait" % (sys.executable, BUSY))
    idle = spawn("sleep 60 & wait")
    try:
        wait_until(lambda: len(ProcessTable.snapshot().tree(busy.pid)) >= 4
                   and len(ProcessTable.snapshot().tree(idle.pid)) >= 2)
        yield {"busy": busy.pid, "idle": idle.pid}
    finally:
        for proc in (busy, idle):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def running_task(root, task_id, pids, sandbox):
    """A runner checkpoint in which each named process's run is RUNNING with the given pid."""
    records = [synth.task_status(TaskState.ACTIVE), synth.header(task_id=task_id, sandbox=sandbox)]
    for name, pid in pids.items():
        run = synth.process_run(name, first_seq=0, pid=pid - 1)
        run[2] = RunnerCkpt(process_status=ProcessStatus(
            seq=2, process=name, state=ProcessState.RUNNING, start_time=time.time(), pid=pid))
        records += run[:3]
    synth.write_stream(os.path.join(root, "checkpoints", task_id, "runner"), records)
    return TaskMonitor(root, task_id)


class FakeResourceHistoryProvider:
    def __init__(self, history):
        self.history = history

    def provides(self, history_time, min_collection_interval):
        return self.history


# -- HistoryProvider, DiskCollectorProvider, ResourceHistory


def test_too_long_history():
    with pytest.raises(ValueError, match="the limit is 10000"):
        HistoryProvider().provides(24 * 3600, 1)
    assert HistoryProvider().provides(3600, 20).maxlen == 180
    assert HistoryProvider().provides(10, 20).maxlen == 1  # shorter than one interval: one entry


def test_disk_collector_provider_default_and_mesos_classes():
    assert isinstance(DiskCollectorProvider().provides("some_path"), DuDiskCollector)
    settings = DiskCollectorSettings(http_api_url="http://127.0.0.1:5051/containers")
    mesos = DiskCollectorProvider(enable_mesos_disk_collector=True, settings=settings).provides("some_path")
    assert isinstance(mesos, MesosDiskCollector)
    assert mesos.settings is settings


def test_resource_history_add_appends_after_the_initial_entry():
    history = ResourceHistory(4)
    assert len(history) == 1 and list(history)[0][1] == ResourceMonitorBase.FullResourceResult({}, 0)
    stamp = time.time() + 100
    value = ResourceMonitorBase.FullResourceResult({}, 0)
    assert (stamp, value) not in list(history)
    history.add(stamp, value)
    assert list(history)[1] == (stamp, value)


def test_resource_history_add_prevents_old_entries():
    with pytest.raises(ValueError, match="Refusing to add timestamp in the past"):
        ResourceHistory(4).add(-1, 10)


def test_resource_history_get_and_bound():
    history = ResourceHistory(3)
    stamp = time.time() + 100
    value = ResourceMonitorBase.FullResourceResult({}, 0)
    wrong = ResourceMonitorBase.FullResourceResult({}, 50)
    history.add(stamp, value)
    history.add(stamp + 1000, wrong)
    history.add(stamp + 10000, wrong)
    assert history.get(stamp) == (stamp, value)
    assert history.get(stamp + 1) == (stamp + 1000, wrong)
    assert history.get(stamp + 99999) == (stamp + 10000, wrong)
    assert len(history) == 3  # the initial entry fell out


# -- TaskResourceMonitor queries (not started), as in Aurora's tests


def test_sample_by_process_without_history_samples_the_live_tree(tmp_path, trees):
    monitor = TaskResourceMonitor("fake-task-id", running_task(str(tmp_path), "fake-task-id", trees, "/x"))
    assert monitor.name == "TaskResourceMonitor[fake-task-id]"
    assert monitor.daemon
    sample = monitor.sample_by_process("busy")
    assert sample.threads >= 4 and sample.rss > 4 * 1024 * 1024  # the whole tree, sampled now
    _, aggregate = monitor.sample()
    assert aggregate == (0, ProcessSample.empty(), 0)  # nothing recorded: the thread never ran


def test_sample_by_process_from_history(tmp_path, trees):
    history = ResourceHistory(2)
    history.add(time.time(), ResourceMonitorBase.FullResourceResult(
        {"busy": ResourceMonitorBase.ProcResourceResult(ProcessSample.empty(), 1),
         "idle": ResourceMonitorBase.ProcResourceResult(ProcessSample.empty(), 2)}, 10))
    monitor = TaskResourceMonitor("fake-task-id", running_task(str(tmp_path), "fake-task-id", trees, "/x"),
                                  history_provider=FakeResourceHistoryProvider(history))
    assert monitor.sample_by_process("busy") == ProcessSample.empty()  # the stored value, not a live one
    assert monitor.sample_by_process("idle") == ProcessSample.empty()
    _, sample = monitor.sample()
    assert sample.num_procs == 3
    assert sample.process_sample == ProcessSample.empty()
    assert sample.disk_usage == 10


def test_sample_by_process_no_process(tmp_path):
    synth.write_stream(os.path.join(str(tmp_path), "checkpoints", "done", "runner"), synth.runner_stream())
    monitor = TaskResourceMonitor("done", TaskMonitor(str(tmp_path), "done"))
    with pytest.raises(ValueError, match='No active process found with name "fake-process-name"'):
        monitor.sample_by_process("fake-process-name")


def test_null_task_resource_monitor():
    monitor = NullTaskResourceMonitor()
    monitor.start()
    null_aggregate = (0, ProcessSample.empty(), 0)
    assert monitor.sample()[1] == null_aggregate
    assert monitor.sample_at(time.time())[1] == null_aggregate
    assert monitor.sample_by_process("any_process") == ProcessSample.empty()
    monitor.kill()
    assert isinstance(monitor, ResourceMonitorBase)


# -- TaskResourceMonitor running, as the observer runs it


def test_monitor_thread_samples_processes_and_disk_then_stops(tmp_path, trees):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "blob").write_bytes(os.urandom(300_000))
    monitor = TaskResourceMonitor("t1", running_task(str(tmp_path), "t1", trees, str(sandbox)),
                                  process_collection_interval=0.05, disk_collection_interval=0.05,
                                  history_time=5.0)
    monitor.start()
    try:
        assert monitor.is_alive()

        def complete():
            _, sample = monitor.sample()
            return sample.num_procs == 6 and sample.disk_usage >= 300_000 and sample.process_sample.rate > 0

        wait_until(complete)
        assert monitor.sample()[1].process_sample.threads >= 6
        assert monitor.sample_by_process("idle").threads >= 2
        before = time.time()
        wait_until(lambda: monitor.sample()[0] > before)
        assert monitor.sample_at(before)[0] >= before
    finally:
        monitor.kill()
        monitor.join(5)
    assert not monitor.is_alive()


def test_monitor_thread_with_the_mesos_disk_collector(tmp_path, trees):
    agent = ContainersAgent()
    try:
        agent.answer([container("thermos-t2", 777), container("thermos-other", 1)])
        sandbox = str(tmp_path / "executors" / "thermos-t2" / "runs" / "latest")
        provider = DiskCollectorProvider(enable_mesos_disk_collector=True,
                                         settings=DiskCollectorSettings(http_api_url=agent.url()))
        # Long intervals: the entry with the agent's figure is recorded because the finished
        # collection wakes the thread, not because the next interval came round.
        monitor = TaskResourceMonitor("t2", running_task(str(tmp_path), "t2", trees, sandbox),
                                      disk_collector_provider=provider, process_collection_interval=60.0,
                                      disk_collection_interval=60.0)
        monitor.start()
        try:
            wait_until(lambda: monitor.sample()[1].disk_usage == 777, timeout=20)
            assert monitor.sample()[1].num_procs == 6
            assert agent.requests == [("GET", "/containers")]
        finally:
            monitor.kill()
            monitor.join(5)
    finally:
        agent.close()


def test_monitors_given_a_sampler_share_its_thread_and_its_disk_policy(tmp_path, trees):
    agent = ContainersAgent()
    sampler = ResourceSampler(interval=0.05, history=5.0, disk_collector_provider=DiskCollectorProvider(
        enable_mesos_disk_collector=True, settings=DiskCollectorSettings(http_api_url=agent.url())))
    try:
        agent.answer([container("thermos-s%d" % i, 1000 + i) for i in range(3)])
        monitors = []
        for i in range(3):
            sandbox = str(tmp_path / "executors" / ("thermos-s%d" % i))
            task_monitor = running_task(str(tmp_path), "s%d" % i, trees, sandbox)
            monitors.append(TaskResourceMonitor("s%d" % i, task_monitor, sampler=sampler))
        for monitor in monitors:
            monitor.start()
        wait_until(lambda: [m.sample()[1].disk_usage for m in monitors] == [1000, 1001, 1002])
        assert all(m.sample()[1].num_procs == 6 and m.is_alive() for m in monitors)
        assert not any(t.name.startswith("TaskResourceMonitor[") for t in threading.enumerate())
        monitors[0].kill()
        monitors[0].join()
        assert sampler.task_ids() == ["s1", "s2"] and not monitors[0].is_alive()
    finally:
        sampler.stop()
        agent.close()


def test_the_readme_monitoring_example_runs(tmp_path, trees):
    """The README's example, pointed at a real task and the /containers stand-in."""
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")) as fp:
        readme = fp.read()
    blocks = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]
    [example] = [block for block in blocks if "TaskResourceMonitor(" in block]
    agent = ContainersAgent()
    try:
        agent.answer([container("thermos-t1", 4321)])
        root = str(tmp_path / "root")
        running_task(root, "t1", trees, str(tmp_path / "executors" / "thermos-t1" / "runs" / "latest"))
        code = example.replace("/var/run/thermos", root).replace("monitor.kill()", "")
        code = code.replace("http://localhost:5051/containers", agent.url())
        namespace = {}
        exec(compile(code, "README.md", "exec"), namespace)
        monitor = namespace["monitor"]
        try:
            assert monitor.name == "TaskResourceMonitor[t1]" and monitor.daemon
            timestamp, usage = namespace["timestamp"], namespace["usage"]
            assert isinstance(timestamp, float) and usage.num_procs >= 0
            wait_until(lambda: monitor.sample()[1].disk_usage == 4321 and monitor.sample()[1].num_procs == 6)
        finally:
            monitor.kill()
            monitor.join(5)
    finally:
        agent.close()


def test_an_unreadable_process_table_records_empty_samples_and_keeps_running(tmp_path, trees, monkeypatch):
    def failing_snapshot(cls):
        raise OSError("process table unreadable")

    monkeypatch.setattr(ProcessTable, "snapshot", classmethod(failing_snapshot))
    monitor = TaskResourceMonitor("t3", running_task(str(tmp_path), "t3", trees, str(tmp_path)),
                                  process_collection_interval=0.05, disk_collection_interval=60.0,
                                  history_time=5.0)
    started = time.time()
    monitor.start()
    try:
        wait_until(lambda: monitor.sample()[0] > started)
        assert monitor.sample()[1][:2] == (0, ProcessSample.empty())
        assert monitor.is_alive()
    finally:
        monitor.kill()
        monitor.join(5)
