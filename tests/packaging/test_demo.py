"""`./dev demo` (scripts/demo.py): the whole stack, one line per step, nothing left running.

Run with the virtualenv's commands (what `./dev demo` does) and with the built pex files."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(HERE, "scripts", "demo.py")

STEPS = [
    r"1/7 agent     stand-in Mesos agent on http://127\.0\.0\.1:\d+, work_dir \S+",
    r"2/7 executor  thermos_executor(\.pex)? ran www-data-prod-hello-0-demo: TASK_STARTING -> TASK_RUNNING "
    r"\"Task is healthy\.\" in [\d.]+ s; see RUN/thermos_executor\.log",
    r"          RUN=\S+/executors/thermos-www-data-prod-hello-0-demo/runs/[0-9a-f-]+",
    r"3/7 task      its web server answers http://127\.0\.0\.1:\d+/health with 'ok' \(HTTP 200\); files in "
    r"RUN/sandbox",
    r"4/7 observer  open http://127\.0\.0\.1:\d+/task/www-data-prod-hello-0-demo: process table, timeline, "
    r"logs \(http://127\.0\.0\.1:\d+/ lists all tasks\)",
    r"5/7 kill      TASK_KILLED \"Instructed to kill task\.\"; the finalizer said 'finalizer ran for "
    r"www-data-prod-hello-0-demo' \(RUN/sandbox/\.logs/goodbye/0/stdout\)",
    r"6/7 observer  http://127\.0\.0\.1:\d+/task/www-data-prod-hello-0-demo now shows KILLED with the "
    r"finalizer's run on the timeline",
    r"7/7 gc        gc_executor: TASK_FINISHED \"Garbage collection finished\.\" freed [\d.]+ \S+: "
    r"RUN/sandbox and the task's checkpoint are gone "
    r"\(log: RUN/\.\./\.\./\.\./aurora\.gc/runs/latest/stderr\)",
    r"done in [\d.]+ s: agent, executors, task and observer stopped; files under \S+",
]


def processes_using(path):
    """Pids whose command line or working directory mention `path`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fp:
                cmdline = fp.read().decode(errors="replace")
            cwd = os.readlink("/proc/%s/cwd" % pid)
        except OSError:
            continue
        if path in cmdline or cwd.startswith(path):
            found.append((pid, cmdline.replace("\0", " ")))
    return found


def run_demo(tmp_path, *args):
    root = str(tmp_path / "demo-root")
    proc = subprocess.run([sys.executable, DEMO, "--root", root, *args], capture_output=True, text=True,
                          timeout=120, cwd=HERE)
    return root, proc


def check(root, proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(STEPS), proc.stdout
    for pattern, line in zip(STEPS, lines, strict=True):
        assert re.fullmatch(pattern, line), (pattern, line)
    assert processes_using(root) == []


def test_demo_with_the_virtualenv_commands(tmp_path):
    check(*run_demo(tmp_path))


def test_demo_with_the_pex_files(tmp_path, dist, pex_root):
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("no /usr/bin/python3")
    root, proc = run_demo(tmp_path, "--bin", dist)
    check(root, proc)
    assert proc.stdout.splitlines()[1].startswith("2/7 executor  thermos_executor.pex ran")


def test_demo_names_a_missing_command_in_one_line(tmp_path):
    root, proc = run_demo(tmp_path, "--bin", str(tmp_path))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "demo: thermos_executor not found in %s (./dev package builds the pex files into " \
                          "dist/)\n" % tmp_path
