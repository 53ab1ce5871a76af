"""Process trees sampled from one snapshot of the process table: Aurora's `ProcessTreeCollector`.

Aurora asked psutil for `children(recursive=True)` per task, which psutil answers by reading the
stat file of *every* process on the host, so each task's sample cost a whole /proc scan. Here a
`ProcessTable` snapshot is taken once and can serve any number of trees: on Linux each
`/proc/<pid>/stat` is read once and already holds the parent pid, CPU times, thread count, nice,
state and memory, so no other per-process call is needed (psutil is the fallback elsewhere).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import psutil

from thermos.monitoring.process import ProcessSample

log = logging.getLogger(__name__)

_CLK_TCK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_BOOT_TIME = psutil.boot_time()  # /proc start times count from boot; samples use the epoch

# /proc/<pid>/stat state letters, named as psutil names them.
_STATES = {
    "R": psutil.STATUS_RUNNING, "S": psutil.STATUS_SLEEPING, "D": psutil.STATUS_DISK_SLEEP,
    "Z": psutil.STATUS_ZOMBIE, "T": psutil.STATUS_STOPPED, "t": psutil.STATUS_TRACING_STOP,
    "X": psutil.STATUS_DEAD, "I": psutil.STATUS_IDLE, "P": psutil.STATUS_PARKED,
    "W": psutil.STATUS_WAKING,
}


class ProcRecord(NamedTuple):
    """One process at snapshot time; `start` (epoch seconds) tells a reused pid apart."""

    pid: int
    ppid: int
    status: str
    user: float
    system: float
    nice: int
    threads: int
    start: float
    vms: int
    rss: int


def _parse_stat(pid: int, raw: bytes) -> ProcRecord | None:
    # The command name is in parentheses and may itself contain spaces or ')'.
    close = raw.rfind(b")")
    if close < 0:
        return None
    f = raw[close + 2:].split()
    if len(f) < 22:
        return None
    state = f[0].decode("ascii", "replace")
    return ProcRecord(
        pid=pid, ppid=int(f[1]), status=_STATES.get(state, state),
        user=int(f[11]) / _CLK_TCK, system=int(f[12]) / _CLK_TCK, nice=int(f[16]),
        threads=int(f[17]), start=_BOOT_TIME + int(f[19]) / _CLK_TCK, vms=int(f[20]),
        rss=int(f[21]) * _PAGE_SIZE)


def _scan_linux(proc: str = "/proc") -> Iterable[ProcRecord]:
    with os.scandir(proc) as it:
        pids = [int(entry.name) for entry in it if entry.name.isdigit()]
    for pid in pids:
        try:
            with open("%s/%d/stat" % (proc, pid), "rb") as fp:
                raw = fp.read()
        except OSError:
            continue  # exited since the directory listing
        record = _parse_stat(pid, raw)
        if record is not None:
            yield record


def _scan_psutil() -> Iterable[ProcRecord]:
    attrs = ["ppid", "status", "cpu_times", "nice", "num_threads", "create_time", "memory_info"]
    for proc in psutil.process_iter(attrs):
        info = proc.info
        times, memory = info.get("cpu_times"), info.get("memory_info")
        if times is None or memory is None or info.get("ppid") is None:
            continue
        yield ProcRecord(
            pid=proc.pid, ppid=info["ppid"], status=info.get("status") or "", user=times.user,
            system=times.system, nice=info.get("nice") or 0, threads=info.get("num_threads") or 0,
            start=info.get("create_time") or 0.0, vms=memory.vms, rss=memory.rss)


class ProcessTable:
    """A snapshot of every process, with a parent -> children index."""

    def __init__(self, records: Iterable[ProcRecord]) -> None:
        self._records: dict[int, ProcRecord] = {}
        self._children: dict[int, list[int]] = {}
        for record in records:
            self._records[record.pid] = record
            self._children.setdefault(record.ppid, []).append(record.pid)

    @classmethod
    def snapshot(cls) -> ProcessTable:
        if sys.platform.startswith("linux") and os.path.isdir("/proc/self"):
            return cls(_scan_linux())
        return cls(_scan_psutil())

    def __len__(self) -> int:
        return len(self._records)

    def get(self, pid: int) -> ProcRecord | None:
        return self._records.get(pid)

    def tree(self, pid: int | None) -> list[ProcRecord]:
        """`pid` and all its descendants that exist in the snapshot ([] if `pid` is gone)."""
        root = self._records.get(pid) if pid is not None else None
        if root is None:
            return []
        found, stack = [root], [root.pid]
        while stack:
            for child in self._children.get(stack.pop(), ()):
                record = self._records.get(child)
                if record is not None:
                    found.append(record)
                    stack.append(child)
        return found


def tree_sample(records: list[ProcRecord], rate: float = 0.0) -> ProcessSample:
    """The sum of a process tree; nice and status are the root's (the first record)."""
    if not records:
        return ProcessSample.empty()
    root = records[0]
    return ProcessSample(
        rate=rate, user=sum(r.user for r in records), system=sum(r.system for r in records),
        rss=sum(r.rss for r in records), vms=sum(r.vms for r in records), nice=root.nice,
        status=root.status, threads=sum(r.threads for r in records))


def process_to_sample(process: psutil.Process) -> ProcessSample:
    """A sample of one psutil.Process; empty if it is gone or not ours to read.

    The rate is psutil's `cpu_percent(0)`, which is 0.0 on the first call for a Process object
    (as in Aurora): a rate needs two samples.
    """
    try:
        with process.oneshot():
            rate = process.cpu_percent(0.0) / 100.0
            times, memory = process.cpu_times(), process.memory_info()
            return ProcessSample(rate=rate, user=times.user, system=times.system, rss=memory.rss,
                                 vms=memory.vms, nice=process.nice(), status=process.status(),
                                 threads=process.num_threads())
    except (psutil.Error, OSError) as err:
        log.debug("Cannot sample process %s: %s", process.pid, err)
        return ProcessSample.empty()


class CpuTracker:
    """CPU rate of a changing set of processes between two consecutive samples.

    Processes are told apart by (pid, start time), so a reused pid is a new process; one born
    since the last sample counts all of its CPU, one that exited simply stops counting.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[int, float], float] = {}
        self._last_time: float | None = None

    def rate(self, records: Iterable[ProcRecord], now: float) -> float:
        current = {(r.pid, r.start): r.user + r.system for r in records}
        used = 0.0
        if self._last_time is not None:
            for (pid, start), cpu in current.items():
                before = self._last.get((pid, start))
                if before is not None:
                    used += max(0.0, cpu - before)
                elif start >= self._last_time:
                    used += cpu  # born since the last sample: all of its CPU is new
        elapsed = now - self._last_time if self._last_time is not None else 0.0
        self._last, self._last_time = current, now
        return used / elapsed if elapsed > 0 else 0.0


class ProcessTreeCollector:
    """Samples one process and all its descendants; the CPU rate comes from consecutive samples.

    Aurora's interface: `sample()`, then `value` (the summed ProcessSample with the measured rate)
    and `procs` (how many processes the last sample found). `sample()` also returns the value,
    and accepts a `ProcessTable` snapshot so that many collectors can share one /proc scan.
    Any error while sampling gives an empty sample and a rate of 0, as in Aurora.
    """

    def __init__(self, pid: int | None, clock: Callable[[], float] = time.time) -> None:
        self._pid = pid
        self._clock = clock
        self._tracker = CpuTracker()
        self._value = ProcessSample.empty()
        self._procs = 0

    @property
    def pid(self) -> int | None:
        return self._pid

    def sample(self, table: ProcessTable | None = None, now: float | None = None) -> ProcessSample:
        try:
            records = (table or ProcessTable.snapshot()).tree(self._pid)
        except (psutil.Error, OSError) as err:
            log.debug("Cannot sample process tree of %s: %s", self._pid, err)
            records = []
        now = self._clock() if now is None else now
        self._value = tree_sample(records, self._tracker.rate(records, now))
        self._procs = len(records)
        return self._value

    @property
    def value(self) -> ProcessSample:
        """The last sample of the tree (empty before the first one)."""
        return self._value

    @property
    def procs(self) -> int:
        """How many processes the last sample found (0 before the first one)."""
        return self._procs
