"""Build thermos_<version>_amd64.deb from the pex files (called by build.py --deb).

Layout (Debian 12):
  /usr/lib/thermos/<command>.pex        the five single-file executables
  /usr/bin/<command>                    symlinks to them (they start with #!/usr/bin/python3)
  /lib/systemd/system/thermos-observer.service, thermos-gc.service, thermos-gc.timer
  /etc/default/thermos-observer, /etc/default/thermos-gc      their flags (conffiles)
  /usr/share/man/man1/<command>.1.gz    manual pages made from each command's --help
  /usr/share/doc/thermos/               copyright, deploy.md, architecture.md

amd64, not all: psutil, markupsafe and thrift inside the pex files are compiled for x86_64 CPython
3.11. Services are installed but not enabled: the observer has no authentication, so an operator
chooses its address first (docs/deploy.md). Built with fixed owners, modes and times, so the same
pex files give the same .deb bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile

PACKAGING = os.path.dirname(os.path.abspath(__file__))
HERE = os.path.dirname(PACKAGING)
COMMANDS = ("thermos_executor", "thermos_runner", "gc_executor", "thermos_observer", "thermos")
UNITS = ("thermos-observer.service", "thermos-gc.service", "thermos-gc.timer")
DEFAULTS = ("thermos-observer", "thermos-gc")
DOCS = ("docs/deploy.md", "docs/architecture.md")
EPOCH = 315532800
SUMMARIES = {
    "thermos_executor": "run one Aurora task under thermos_runner for a Mesos agent",
    "thermos_runner": "run one Thermos task from its JSON, checkpointing every change",
    "gc_executor": "collect finished Thermos tasks on a Mesos agent for the Aurora scheduler",
    "thermos_observer": "serve the Thermos tasks of this host over HTTP (read-only)",
    "thermos": "run, inspect, kill and garbage-collect Thermos tasks",
}

CONTROL = """Package: thermos
Version: {version}
Architecture: amd64
Maintainer: Thermos maintainers <thermos@localhost>
Depends: python3 (>= 3.11~), python3 (<< 3.12)
Section: admin
Priority: optional
Installed-Size: {size_kb}
Homepage: https://github.com/apache/aurora
Description: crash-safe process supervisor and Mesos executor compatible with Aurora's Thermos
 Thermos runs Apache Aurora tasks on Mesos agents: thermos_executor (with thermos_runner inside),
 gc_executor, the thermos_observer web view (a systemd service, not enabled by default), the
 thermos command and an optional garbage-collection timer. Each command is one self-contained
 pex file for the system's Python 3.11.
"""

POSTINST = """#!/bin/sh
# Units are installed, not enabled (the observer has no authentication: choose its address first).
set -e
if [ "$1" = configure ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
"""

POSTRM = """#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
if [ "$1" = purge ]; then
    rm -rf "${DPKG_ROOT:-}/var/cache/thermos-observer" "${DPKG_ROOT:-}/var/cache/thermos-gc"
fi
exit 0
"""

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: thermos
Source: this repository

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
 .
 The pex files bundle their dependencies (thrift, pystachio, psutil, kazoo, flask, waitress,
 prometheus-client, pymesos, http-parser, jmespath and theirs) under their own licences, recorded
 in each bundled distribution's metadata.
"""


def _roff(text: str) -> str:
    lines = []
    for line in text.splitlines():
        line = line.replace("\\", "\\e")
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def manpage(command: str, help_text: str, version: str) -> bytes:
    """A section-1 page whose body is the command's own --help, verbatim (help2man's idea)."""
    page = "\n".join([
        '.TH %s 1 "" "thermos %s" "User Commands"' % (command.upper().replace("_", "\\_"), version),
        ".SH NAME", "%s \\- %s" % (command.replace("_", "\\_"), SUMMARIES[command]),
        ".SH SYNOPSIS", ".B %s" % command, "[\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION", ".nf", _roff(help_text), ".fi",
        ".SH FILES", ".nf", "/usr/lib/thermos/%s.pex" % command,
        "/etc/default/thermos-observer, /etc/default/thermos-gc", ".fi",
        ".SH SEE ALSO", "/usr/share/doc/thermos/deploy.md", ""])
    return page.encode()


def help_text(pex: str, pex_root: str) -> str:
    proc = subprocess.run(["/usr/bin/python3", "-I", pex, "--help"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PEX_ROOT": pex_root, "HOME": pex_root,
                               "COLUMNS": "80"}, check=True)
    return proc.stdout


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fp:
        fp.write(data)
    os.chmod(path, mode)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def stage(root: str, pex_dir: str, version: str) -> None:
    """Lay out the package's files (and DEBIAN/) under `root`."""
    with tempfile.TemporaryDirectory(prefix="thermos-man-") as pex_root:
        for command in COMMANDS:
            pex = os.path.join(pex_dir, command + ".pex")
            with open(pex, "rb") as fp:
                _write(os.path.join(root, "usr/lib/thermos", command + ".pex"), fp.read(), 0o755)
            os.makedirs(os.path.join(root, "usr/bin"), exist_ok=True)
            os.symlink("../lib/thermos/%s.pex" % command, os.path.join(root, "usr/bin", command))
            _write(os.path.join(root, "usr/share/man/man1", command + ".1.gz"),
                   _gzip(manpage(command, help_text(pex, pex_root), version)))
    for unit in UNITS:
        with open(os.path.join(PACKAGING, "systemd", unit), "rb") as fp:
            _write(os.path.join(root, "lib/systemd/system", unit), fp.read())
    for name in DEFAULTS:
        with open(os.path.join(PACKAGING, "default", name), "rb") as fp:
            _write(os.path.join(root, "etc/default", name), fp.read())
    doc = os.path.join(root, "usr/share/doc/thermos")
    _write(os.path.join(doc, "copyright"), COPYRIGHT.encode())
    for rel in DOCS:
        src = os.path.join(HERE, rel)
        if os.path.exists(src):
            with open(src, "rb") as fp:
                _write(os.path.join(doc, os.path.basename(rel)), fp.read())
    size_kb = sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(root) for f in fs) // 1024 + 1
    debian = os.path.join(root, "DEBIAN")
    _write(os.path.join(debian, "control"), CONTROL.format(version=version, size_kb=size_kb).encode())
    _write(os.path.join(debian, "conffiles"),
           "".join("/etc/default/%s\n" % name for name in DEFAULTS).encode())
    _write(os.path.join(debian, "postinst"), POSTINST.encode(), 0o755)
    _write(os.path.join(debian, "postrm"), POSTRM.encode(), 0o755)
    sums = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if os.path.relpath(dirpath, root).split(os.sep)[0] == "DEBIAN":
            continue
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as fp:
                sums.append("%s  %s\n" % (hashlib.md5(fp.read()).hexdigest(), os.path.relpath(path, root)))
    _write(os.path.join(debian, "md5sums"), "".join(sums).encode())
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (EPOCH, EPOCH), follow_symlinks=False)
        os.utime(dirpath, (EPOCH, EPOCH))


def build_deb(pex_dir: str, out_dir: str, version: str) -> str:
    """Stage and build the package with dpkg-deb; returns the .deb's path."""
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError("dpkg-deb not found (apt-get install dpkg)")
    target = os.path.join(out_dir, "thermos_%s_amd64.deb" % version)
    with tempfile.TemporaryDirectory(prefix="thermos-deb-") as work:
        root = os.path.join(work, "root")
        stage(root, pex_dir, version)
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, target], env=env,
                       check=True, stdout=subprocess.DEVNULL)
    return target
