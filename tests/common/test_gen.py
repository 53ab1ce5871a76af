"""The committed generated code must be exactly what the IDL generates today."""

import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest

from thermos.gen.thermos.ttypes import ProcessState, RunnerCkpt, TaskState

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("thrift") is None, reason="thrift compiler not installed")
def test_generated_code_is_fresh(tmp_path):
    subprocess.run([str(ROOT / "scripts" / "gen_thrift.sh"), str(tmp_path)], check=True)
    for fresh in (tmp_path / "thermos" / "gen").rglob("*.py"):
        committed = ROOT / fresh.relative_to(tmp_path)
        assert committed.exists(), "%s is not committed; run scripts/gen_thrift.sh" % committed
        assert filecmp.cmp(fresh, committed, shallow=False), (
            "%s differs from a fresh generation; run scripts/gen_thrift.sh" % committed)


def test_enum_values_are_auroras():
    assert ProcessState._VALUES_TO_NAMES == {
        0: "WAITING", 1: "FORKED", 2: "RUNNING", 3: "SUCCESS", 4: "KILLED", 5: "FAILED", 6: "LOST"}
    assert TaskState._VALUES_TO_NAMES == {
        0: "ACTIVE", 1: "SUCCESS", 2: "FAILED", 3: "KILLED", 4: "LOST", 5: "CLEANING", 6: "FINALIZING"}
    assert [f[2] for f in RunnerCkpt.thrift_spec if f] == ["runner_header", "process_status", "task_status"]
