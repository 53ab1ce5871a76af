"""Checkpoint replay and append latency, each beside a same-run baseline.

Replay: a realistic 100k-record runner checkpoint (header, task statuses, 10 processes with many
runs) replayed by CheckpointDispatcher.from_file, beside (a) thrift's binary protocol decoding the
same payloads alone and (b) a bare frame scan. Append: ThriftRecordWriter with sync (write+fsync
per record) beside a raw os.write+fsync of the same bytes.

Usage: python bench/checkpoint_replay.py [--records N] [--appends N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import tempfile
import time

from thrift.protocol import TBinaryProtocol, fastbinary
from thrift.transport import TTransport

from thermos.common.ckpt import CheckpointDispatcher
from thermos.common.recordio import ThriftCodec, ThriftRecordWriter, encode_frame
from thermos.gen.thermos.ttypes import ProcessState, RunnerCkpt, TaskState
from thermos.testing import ckpt as samples


def build(path: str, records: int, processes: int = 10) -> int:
    """Write ~`records` records: each process fails and restarts until the budget is used."""
    out = [samples.task_status(TaskState.ACTIVE), samples.header(task_id="bench")]
    runs = max(1, (records - 5) // (processes * 4))
    t = 1.7e9
    for run in range(runs):
        for p in range(processes):
            last = run == runs - 1
            out.extend(samples.process_run(
                "process_%d" % p, run * 4, ProcessState.SUCCESS if last else ProcessState.FAILED,
                t=t, pid=20_000 + p, return_code=0 if last else 1))
            t += 0.5
    out.append(samples.task_status(TaskState.SUCCESS))
    samples.write_stream(path, out)
    return len(out)


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def frame_scan(data: bytes) -> list[bytes]:
    payloads = []
    offset, size, unpack = 0, len(data), struct.Struct(">L").unpack_from
    while offset < size:
        (length,) = unpack(data, offset)
        payloads.append(data[offset + 4:offset + 4 + length])
        offset += 4 + length
    return payloads


def replay_bench(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "runner")
        count = build(path, n)
        with open(path, "rb") as fp:
            data = fp.read()
        payloads = frame_scan(data)
        spec = [RunnerCkpt, RunnerCkpt.thrift_spec]
        proto = TBinaryProtocol.TBinaryProtocolAccelerated(TTransport.TMemoryBuffer(b""))

        def decode_only() -> None:
            # the fastest plain loop over thrift's C decoder: one protocol, one buffer per record
            for payload in payloads:
                proto.trans = TTransport.TMemoryBuffer(payload)
                fastbinary.decode_binary(RunnerCkpt(), proto, spec)

        def replay() -> None:
            state = CheckpointDispatcher.from_file(path)
            assert state is not None and len(state.processes) == 10

        t_replay = best_of(replay)
        t_decode = best_of(decode_only)
        t_scan = best_of(lambda: frame_scan(data))
        return {"records": count, "bytes": len(data), "replay": count / t_replay,
                "decode": count / t_decode, "scan": count / t_scan}


def append_bench(n: int) -> dict[str, float]:
    record = samples.process_run("process_0", 0)[1]
    frame = encode_frame(ThriftCodec(RunnerCkpt).encode(record))
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        ours, raw = [], []
        with open(os.path.join(tmp, "ours"), "a+b") as fp, \
                open(os.path.join(tmp, "raw"), "ab") as rawfp:
            writer = ThriftRecordWriter(fp)
            writer.set_sync(True)
            fd = rawfp.fileno()
            for _ in range(n):  # interleaved so both see the same disk weather
                start = time.perf_counter()
                writer.write(record)
                ours.append(time.perf_counter() - start)
                start = time.perf_counter()
                os.write(fd, frame)
                os.fsync(fd)
                raw.append(time.perf_counter() - start)

    def pct(xs: list[float], q: float) -> float:
        return statistics.quantiles(xs, n=100)[int(q) - 1] * 1000

    return {"ours_p50": pct(ours, 50), "ours_p99": pct(ours, 99), "raw_p50": pct(raw, 50),
            "raw_p99": pct(raw, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=2000)
    args = parser.parse_args()
    r = replay_bench(args.records)
    print("checkpoint_replay: %d records, %.1f MB" % (r["records"], r["bytes"] / 1e6))
    print("  %-34s %12.0f rec/s" % ("full replay (from_file)", r["replay"]))
    print("  %-34s %12.0f rec/s" % ("baseline: thrift decode only", r["decode"]))
    print("  %-34s %12.0f rec/s" % ("baseline: frame scan only", r["scan"]))
    print("  replay cost vs decode-only: %.2fx (goal <= 2x); goal >= 200k rec/s: %s" % (
        r["decode"] / r["replay"], "met" if r["replay"] >= 200_000 else "MISSED"))
    a = append_bench(args.appends)
    print("append+fsync latency over %d records (ms):" % args.appends)
    print("  %-34s p50 %.3f  p99 %.3f" % ("ThriftRecordWriter (sync)", a["ours_p50"], a["ours_p99"]))
    print("  %-34s p50 %.3f  p99 %.3f" % ("baseline: os.write + fsync", a["raw_p50"], a["raw_p99"]))
    print("  p99 ratio: %.2fx (goal <= 1.5x)" % (a["ours_p99"] / a["raw_p99"]))


if __name__ == "__main__":
    main()
