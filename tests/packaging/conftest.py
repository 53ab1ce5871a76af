"""Session fixtures: the pex files and the .deb, built once per session (and cached across sessions
under build/packaging/<hash of the sources> by packaging/build.py itself)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.harness.mesos import agent_factory, mesos_agent  # noqa: F401

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYSTEM_PYTHON = "/usr/bin/python3"
COMMANDS = ("thermos_executor", "thermos_runner", "gc_executor", "thermos_observer", "thermos")


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, str]:
    """{"out": a directory holding <command>.pex for every command and thermos_<version>_amd64.deb,
    "build_dir": build.py's cache directory for these sources (the source snapshot is its src/)}."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("the pex files target Debian's %s" % SYSTEM_PYTHON)
    out = str(tmp_path_factory.mktemp("dist"))
    build = os.path.join(HERE, "packaging", "build.py")
    proc = subprocess.run([sys.executable, build, "--deb", "--no-report", "--out", out],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    build_dir = re.search(r"(?:already built in|into) (\S+)$", proc.stdout, re.M).group(1)
    return {"out": out, "build_dir": build_dir}


@pytest.fixture(scope="session")
def dist(built) -> str:
    return built["out"]


@pytest.fixture(scope="session")
def pex_root(tmp_path_factory) -> str:
    """One PEX_ROOT for the session: each pex unpacks its virtualenv there on first use."""
    return str(tmp_path_factory.mktemp("pex-root"))


@pytest.fixture(scope="session")
def clean_env(pex_root) -> dict[str, str]:
    """The environment of a bare host: no virtualenv, no PYTHONPATH, the system PATH."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": pex_root, "PEX_ROOT": pex_root,
            "LANG": "C.UTF-8"}
