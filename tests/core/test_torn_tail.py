"""A writer killed mid-append leaves half a frame; the next writer must not append after it."""

from __future__ import annotations

import os
import signal

from thermos.gen.thermos.ttypes import TaskState
from thermos.testing.runner import RunnerHarness

from .runner_util import assert_states_agree, proc, task

HALF_FRAME = b"\x00\x00\x00\x40\x0c\x00"  # a header promising 64 bytes, and 2 of them


def test_a_restarted_runner_trims_torn_tails_before_appending(tmp_path):
    harness = RunnerHarness(task(proc("p", "exec sleep 300", max_failures=3)), root=str(tmp_path))
    runner = harness.start()
    harness.wait_for_running("p")
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    coordinator = harness.pathspec.given(process="p").getpath("process_checkpoint")
    sizes = {}
    for path in (harness.runner_checkpoint, coordinator):
        sizes[path] = os.path.getsize(path)
        with open(path, "ab") as fp:
            fp.write(HALF_FRAME)
    again = harness.start()
    harness.wait_for(lambda s: len(s.statuses) >= 2)  # it took over and appended
    os.kill(again.pid, signal.SIGUSR1)
    result = harness.finish(again, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Cut a torn 6-byte tail off" in result.stderr
    assert result.reconstructed_state is not None  # no corruption in the middle of the file
    assert_states_agree(result)
    assert result.task_state == TaskState.KILLED
    with open(harness.runner_checkpoint, "rb") as fp:
        assert HALF_FRAME not in fp.read()[sizes[harness.runner_checkpoint] - 2:]
