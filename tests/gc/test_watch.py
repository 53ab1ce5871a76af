"""`thermos gc --watch` / `--once` over a Mesos work_dir whose runs hold real thermos_runner checkpoints."""

import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from tests.cli.helpers import REPO
from tests.gc.helpers import make_outside, snapshot
from thermos.cli.main import main
from thermos.testing.wait import wait_until

HOUR = 3600.0
ROOT = os.geteuid() == 0


def gc(capsys, workdir, tmp_path, *args):
    empty = tmp_path / "no-fixed-root"
    empty.mkdir(exist_ok=True)
    capsys.readouterr()
    code = main(["--root", str(empty), "--mesos-root", workdir.path, "gc", *args])
    out, err = capsys.readouterr()
    lines = [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", line) for line in out.splitlines()]
    return code, lines, err


def collected(lines):
    return [line.split()[1] for line in lines if line.startswith("collected ")]


@pytest.fixture
def host(workdir):
    """Finished tasks of several ages, a live runner, a stale ACTIVE checkpoint and a run without sentinel."""
    now = time.time()
    runs = {
        "old_1": workdir.run_task("old_1", mtime=now - 5 * HOUR),
        "old_2": workdir.run_task("old_2", "echo bye; exit 1", mtime=now - 4 * HOUR),
        "new_1": workdir.run_task("new_1", mtime=now - 1 * HOUR),
        "unsentinelled": workdir.run_task("unsentinelled", sentinel=False, mtime=now - 9 * HOUR),
        "stale": workdir.stale_task("stale", mtime=now - 8 * HOUR),
        "live": workdir.run_task("live", "sleep 600", wait=False),
    }
    return runs


def test_once_collects_the_oldest_beyond_the_count_and_nothing_else(capsys, workdir, tmp_path, host):
    code, lines, err = gc(capsys, workdir, tmp_path, "--once", "--max-terminal-tasks", "1")
    assert code == 0, err
    assert lines[0] == "watching %s, Mesos work_dir %s every 60s" % (tmp_path / "no-fixed-root", workdir.path)
    assert "trigger: 3 finished tasks > 1" in lines
    assert collected(lines) == ["old_1", "old_2"]  # oldest first, then it stops
    for line in lines:
        if line.startswith("collected "):
            assert re.search(r": freed \d+\.\d KiB \(policy\)$", line), line
    assert not host["old_1"].exists() and not os.path.exists(host["old_1"].sandbox)
    assert not host["old_2"].exists()
    for name in ("new_1", "unsentinelled", "stale", "live"):
        assert host[name].exists(), name
    skips = {line.split()[1]: line for line in lines if line.startswith("skip: ")}
    assert "no executor.sentinel yet" in skips["unsentinelled"]
    assert "'thermos kill stale' marks it LOST" in skips["stale"]
    assert not any("live" in line.split(":")[0] for line in lines if line.startswith(("skip", "collected")))
    assert host["live"].proc.poll() is None
    # the agent's `latest` symlinks are neither followed nor deleted
    runs_dir = os.path.dirname(host["old_1"].path)
    assert os.path.islink(os.path.join(runs_dir, "latest"))
    assert os.path.islink(os.path.join(workdir.path, "slaves", "latest"))


def test_dry_run_deletes_nothing(capsys, workdir, tmp_path, host):
    before = snapshot(workdir.path)
    code, lines, _ = gc(capsys, workdir, tmp_path, "--once", "--dryrun", "--max_age", "2h")
    assert code == 0
    assert [line for line in lines if line.startswith("would collect")] == [
        "would collect old_1 in %s (policy)" % host["old_1"].root,
        "would collect old_2 in %s (policy)" % host["old_2"].root]
    assert snapshot(workdir.path) == before


def test_a_zero_disk_threshold_collects_every_finished_task_but_no_live_one(capsys, workdir, tmp_path, host):
    code, lines, _ = gc(capsys, workdir, tmp_path, "--once", "--disk-high", "0")
    assert code == 0
    assert any(line.startswith("trigger: disk usage ") for line in lines)
    assert collected(lines) == ["old_1", "old_2", "new_1"]
    assert lines[-1].startswith("pass done: collected 3 task(s), freed ")
    assert host["live"].exists() and host["stale"].exists() and host["unsentinelled"].exists()


def test_a_sandbox_symlinked_out_of_the_run_is_skipped_with_one_line(capsys, workdir, tmp_path):
    run = workdir.run_task("evil", mtime=time.time() - 5 * HOUR)
    outside = make_outside(str(tmp_path / "outside"))
    shutil.rmtree(run.sandbox)
    os.symlink(outside, run.sandbox)
    before = snapshot(outside)
    code, lines, _ = gc(capsys, workdir, tmp_path, "--once", "--max_age", "1h")
    assert code == 1
    assert [line for line in lines if "evil" in line] == [
        "skipped evil in %s: %s is a symlink: not followed, left in place" % (run.root, run.sandbox)]
    assert snapshot(outside) == before


def test_bad_watch_flags_are_one_line(capsys, workdir, tmp_path):
    for args, message in ((("--once", "--disk-low", "50"), "--disk-low 50 needs a --disk-high at or above"),
                          (("--once", "--interval", "soon"), "bad --interval 'soon'"),
                          (("--once", "some_task"), "--watch collects by policy and takes no task regexes")):
        code, _, err = gc(capsys, workdir, tmp_path, *args)
        assert code == 1 and err.count("\n") == 1 and message in err, err
    with pytest.raises(SystemExit) as exit_:
        main(["gc", "--watch", "--disk-high", "120"])
    assert exit_.value.code == 2
    assert "expected a percentage between 0 and 100, got '120'" in capsys.readouterr().err


def test_watch_runs_passes_until_sigterm(workdir, tmp_path):
    workdir.run_task("old", mtime=time.time() - 5 * HOUR)
    empty = tmp_path / "none"
    empty.mkdir()
    proc = subprocess.Popen(
        [os.path.join(REPO, ".venv", "bin", "python"), "-m", "thermos.cli.main", "--root", str(empty),
         "--mesos-root", workdir.path, "gc", "--watch", "--interval", "0.2", "--max_age", "1h"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines = []

    def read():
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: sum("nothing to collect" in line for line in lines) >= 2, timeout=60)
    finally:
        proc.terminate()
    assert proc.wait(timeout=30) == 0
    reader.join(timeout=10)
    assert sum(line.split(" ", 2)[2].startswith("collected old ") for line in lines) == 1


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root")
def test_disk_pressure_on_a_small_tmpfs_collects_oldest_first_until_under_the_low_mark(capsys, tmp_path):
    from tests.gc.workdir import WorkDir

    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    workdir = WorkDir(str(mount / "mesos"))
    try:
        now = time.time()
        runs = [workdir.run_task("t%d" % i, "head -c 1000000 /dev/zero > blob", mtime=now - (10 - i) * HOUR)
                for i in range(5)]
        st = os.statvfs(str(mount))
        used = 100.0 * (st.f_blocks - st.f_bfree) / st.f_blocks
        per_task = 100.0 * 1_000_000 / (st.f_blocks * st.f_frsize)
        low = used - 1.5 * per_task  # two of the oldest tasks must go, not three
        code, lines, err = gc(capsys, workdir, tmp_path, "--once", "--disk-high", "%.2f" % (used - 1),
                              "--disk-low", "%.2f" % low)
        assert code == 0, err
        assert collected(lines) == ["t0", "t1"], lines
        assert any(line.startswith("pressure relieved on device") for line in lines)
        assert [run.exists() for run in runs] == [False, False, True, True, True]
    finally:
        workdir.stop_all()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_help_lists_the_watch_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["gc", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for flag in ("--watch", "--once", "--interval", "--disk-high", "--disk-low", "--inode-high",
                 "--inode-low", "--max-terminal-tasks", "--sandbox-root"):
        assert flag in out
