"""Running `thermos` in-process (fast) or as a real subprocess (entry point, stdin, following)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from thermos.cli.main import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Result:
    code: int
    out: str
    err: str


def thermos(capsys, root, *args) -> Result:
    capsys.readouterr()
    code = main(["--root", root, "--mesos-root", "", *args])
    out, err = capsys.readouterr()
    return Result(code, out, err)


def thermos_cmd(root, *args) -> list[str]:
    return [sys.executable, "-m", "thermos.cli.main", "--root", root, "--mesos-root", "", *args]


def thermos_proc(root, *args, stdin: str | None = None, timeout: float = 60) -> Result:
    proc = subprocess.run(thermos_cmd(root, *args), input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    return Result(proc.returncode, proc.stdout, proc.stderr)
