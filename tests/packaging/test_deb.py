"""The .deb installed with dpkg into a scratch root: files in place, commands runnable, units valid."""

from __future__ import annotations

import glob
import gzip
import os
import shlex
import shutil
import subprocess

import pytest

from tests.packaging.conftest import COMMANDS, SYSTEM_PYTHON

UNITS = ("thermos-observer.service", "thermos-gc.service", "thermos-gc.timer")


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory):
    """A scratch root with an empty dpkg database and the package installed into it."""
    if os.geteuid() != 0:
        pytest.skip("dpkg --root installs root-owned files")
    root = str(tmp_path_factory.mktemp("scratch-root"))
    admin = os.path.join(root, "var", "lib", "dpkg")
    for sub in ("info", "updates", "triggers"):
        os.makedirs(os.path.join(admin, sub))
    for name in ("status", "available"):
        open(os.path.join(admin, name), "w").close()
    deb = glob.glob(os.path.join(dist, "thermos_*_amd64.deb"))[0]
    # no python3 in the scratch database: --force-depends; maintainer scripts run outside a chroot
    proc = subprocess.run(["dpkg", "--root=%s" % root, "--force-depends", "--force-script-chrootless",
                           "--log=/dev/null", "-i", deb], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


@pytest.mark.root
def test_files_are_in_place(installed):
    root = installed
    for command in COMMANDS:
        pex = os.path.join(root, "usr/lib/thermos", command + ".pex")
        assert os.access(pex, os.X_OK)
        assert os.readlink(os.path.join(root, "usr/bin", command)) == "../lib/thermos/%s.pex" % command
        with gzip.open(os.path.join(root, "usr/share/man/man1", command + ".1.gz"), "rt") as fp:
            page = fp.read()
        assert ".SH NAME" in page and ("usage:" in page or "commands:" in page)
    for unit in UNITS:
        assert os.path.isfile(os.path.join(root, "lib/systemd/system", unit))
    status = subprocess.run(["dpkg", "--root=%s" % root, "-s", "thermos"], capture_output=True, text=True)
    assert "Status: install ok installed" in status.stdout
    conffiles = status.stdout.split("Conffiles:")[1]
    assert "/etc/default/thermos-observer" in conffiles and "/etc/default/thermos-gc" in conffiles


@pytest.mark.root
def test_installed_commands_run_through_their_links(installed, clean_env):
    proc = subprocess.run([os.path.join(installed, "usr/bin/thermos_observer"), "--help"], env=clean_env,
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: thermos_observer"), proc.stderr
    with open(os.path.join(installed, "usr/lib/thermos/thermos.pex"), "rb") as fp:
        assert fp.readline() == b"#!%s\n" % SYSTEM_PYTHON.encode()


@pytest.mark.root
def test_default_gc_flags_are_accepted(installed, clean_env, tmp_path):
    """/etc/default/thermos-gc's flags, as thermos-gc.service passes them, on an empty root."""
    with open(os.path.join(installed, "etc/default/thermos-gc")) as fp:
        line = next(ln for ln in fp if ln.startswith("GC_FLAGS="))
    flags = shlex.split(line.split("=", 1)[1])[0].split()  # systemd splits an unquoted $GC_FLAGS on spaces
    empty = tmp_path / "root"
    empty.mkdir()
    thermos = os.path.join(installed, "usr/bin/thermos")
    argv = [thermos, "--root", str(empty), "--mesos-root", "", "gc", "--once", "--dryrun", *flags]
    proc = subprocess.run(argv, env=clean_env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "watching %s" % empty in proc.stdout


@pytest.mark.root
def test_systemd_units_verify(installed, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # verify needs the standard targets the units hang off; give it a copy of the root with them
    root = str(tmp_path / "root")
    shutil.copytree(installed, root, symlinks=True)
    for unit in glob.glob("/lib/systemd/system/*.target") + glob.glob("/lib/systemd/system/*.slice"):
        shutil.copy(unit, os.path.join(root, "lib/systemd/system"))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", "--root=%s" % root,
                           *("/lib/systemd/system/" + unit for unit in UNITS)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
