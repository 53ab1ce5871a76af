#!/usr/bin/env python3
"""Build the single-file executables (pex) and, with --deb, the Debian package.

    packaging/build.py [--out DIR] [--deb] [--check-reproducible] [--force]

Each of thermos_executor, thermos_runner, gc_executor, thermos_observer and thermos becomes one
`<name>.pex` that runs on a bare Debian Python 3.11 (`/usr/bin/python3`, nothing pip-installed):
every dependency is inside, pymesos' http-parser as the pure-Python wheel built here (its sdist does
not compile on 3.11; see scripts/install_pymesos.sh). The files are pex "venv" pexes: the first run
unpacks a private virtualenv under $PEX_ROOT (default ~/.cache/pex) and later runs start from it,
which halves start-up against a zipapp pex.

Builds are reproducible: sources are copied out of the tree and built with a fixed
SOURCE_DATE_EPOCH, and pex writes zip entries in a fixed order with fixed times, so two builds of the
same sources give the same bytes (--check-reproducible builds twice and compares). The result is
cached under build/packaging/<hash of the sources> and copied to --out (default dist/).

Only the standard library here: it runs under the project's virtualenv, which has pex (dev extras).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("thermos", "executor", "gc", "observer", "setup.py", "pyproject.toml", "README.md")
PACKAGING_INPUTS = ("packaging",)
# (file name, console script); the runner is also inside thermos_executor.pex (PEX_MODULE override).
EXECUTABLES = (("thermos_executor", "thermos_executor"), ("thermos_runner", "thermos_runner"),
               ("gc_executor", "gc_executor"), ("thermos_observer", "thermos_observer"),
               ("thermos", "thermos"))
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip entry can carry
HTTP_PARSER = "http-parser==0.9.0"
TARGET_PYTHON = "/usr/bin/python3"
KEEP_BUILDS = 3


class BuildError(Exception):
    """A build step failed; str() is one line saying which and where its log is."""


def log(line: str) -> None:
    print("build: " + line, flush=True)


def _files(top: str) -> list[str]:
    if os.path.isfile(top):
        return [top]
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".pytest_cache"))
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.endswith(".pyc")]
    return found


def snapshot(dest: str, root: str = HERE) -> str:
    """Copy the inputs of a build out of the (shared, changing) tree; returns their hash, the cache key."""
    digest = hashlib.sha256()
    for top in SOURCES + PACKAGING_INPUTS:
        for path in _files(os.path.join(root, top)):
            rel = os.path.relpath(path, root)
            target = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(path, target)
            with open(target, "rb") as fp:
                digest.update(rel.encode() + b"\0" + hashlib.sha256(fp.read()).digest())
    digest.update(sys.version.split()[0].encode())
    return digest.hexdigest()[:16]


def _run(cmd: list[str], what: str, logfile: str, cwd: str | None = None,
         env: dict[str, str] | None = None) -> None:
    with open(logfile, "ab") as out:
        out.write(("\n$ %s\n" % " ".join(cmd)).encode())
        out.flush()
        rc = subprocess.call(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    if rc != 0:
        raise BuildError("%s failed (exit %d); see %s" % (what, rc, logfile))


def _env() -> dict[str, str]:
    env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, PYTHONHASHSEED="0")
    env.pop("PEX", None)
    return env


def pinned_dependencies() -> list[str]:
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as fp:
        return list(tomllib.load(fp)["project"]["dependencies"])


def project_version() -> str:
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as fp:
        return tomllib.load(fp)["project"]["version"]


def build_http_parser_wheel(wheels: str, work: str, logfile: str) -> None:
    """http-parser 0.9.0 as a pure-Python wheel: its setup.py skips the C extension on PyPy, so it
    is run believing it is on PyPy; at run time http_parser falls back to its Python parser."""
    if any(f.startswith("http_parser-0.9.0-") for f in os.listdir(wheels)):
        return
    sdist = os.path.join(work, "sdist")
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", sdist,
          HTTP_PARSER], "downloading the http-parser sdist", logfile, env=_env())
    with tarfile.open(os.path.join(sdist, "http-parser-0.9.0.tar.gz")) as tar:
        tar.extractall(work, filter="data")
    script = ("import sys; sys.pypy_version_info = (7, 3, 0); "
              "sys.argv = ['setup.py', '-q', 'bdist_wheel', '-d', %r]; "
              "exec(compile(open('setup.py').read(), 'setup.py', 'exec'), "
              "{'__name__': '__main__', '__file__': 'setup.py'})" % wheels)
    _run([sys.executable, "-c", script], "building the http-parser wheel", logfile,
         cwd=os.path.join(work, "http-parser-0.9.0"), env=_env())


def build_wheels(src: str, wheels: str, work: str, logfile: str) -> None:
    """Every wheel the pex files need, in one directory: third-party pins, http-parser, thermos (from
    the snapshot `src`)."""
    os.makedirs(wheels, exist_ok=True)
    build_http_parser_wheel(wheels, work, logfile)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", wheels, "--find-links", wheels,
          *pinned_dependencies()], "pip wheel of the dependencies", logfile, env=_env())
    for old in os.listdir(wheels):
        if old.startswith("thermos-"):
            os.unlink(os.path.join(wheels, old))
    tree = os.path.join(work, "tree")  # pip builds in place: keep the snapshot itself clean
    shutil.copytree(src, tree)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, tree],
         "building the thermos wheel", logfile, env=_env())


def build_pex(name: str, script: str, wheels: str, out: str, logfile: str) -> str:
    target = os.path.join(out, name + ".pex")
    _run([sys.executable, "-m", "pex", "--no-pypi", "--find-links", wheels, "--venv",
          "--python-shebang", TARGET_PYTHON, "-c", script, "-o", target,
          "thermos==%s" % project_version()], "pex of %s" % name, logfile, env=_env())
    return target


def build_all(src: str, out: str, work: str) -> list[str]:
    """Build every pex from the snapshot `src` into `out` (created); returns their paths."""
    os.makedirs(out, exist_ok=True)
    logfile = os.path.join(out, "build.log")
    wheels = os.path.join(work, "wheels")
    build_wheels(src, wheels, work, logfile)
    return [build_pex(name, script, wheels, out, logfile) for name, script in EXECUTABLES]


def sha256(path: str) -> str:
    with open(path, "rb") as fp:
        return hashlib.sha256(fp.read()).hexdigest()


def start_up(path: str, pex_root: str) -> float:
    """Seconds for `python3 -I <pex> --help` to exit, with the given PEX_ROOT."""
    env = {"PATH": "/usr/bin:/bin", "PEX_ROOT": pex_root, "HOME": pex_root}
    started = time.perf_counter()
    proc = subprocess.run([TARGET_PYTHON, "-I", path, "--help"], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise BuildError("%s --help failed on %s: %s" % (os.path.basename(path), TARGET_PYTHON,
                                                        proc.stderr.decode(errors="replace").strip()[-300:]))
    return elapsed


def report(paths: list[str]) -> None:
    """One line per file: size, hash, start-up on a fresh PEX_ROOT and then warm."""
    with tempfile.TemporaryDirectory(prefix="thermos-pex-root-") as pex_root:
        for path in paths:
            first = start_up(path, pex_root)
            warm = min(start_up(path, pex_root) for _ in range(3))
            print("%-22s %6.1f MB  sha256 %s  --help: first run %.2f s, then %.2f s" % (
                os.path.basename(path), os.path.getsize(path) / 1e6, sha256(path)[:16], first, warm),
                flush=True)


def cached_build(cache_root: str, force: bool = False) -> tuple[str, list[str]]:
    """The build directory for the current sources (built now unless cached) and its pex files.
    The snapshot built from stays in <build dir>/src, for --check-reproducible."""
    os.makedirs(cache_root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="src-", dir=cache_root)
    key = snapshot(staging)
    build_dir = os.path.join(cache_root, key)
    paths = [os.path.join(build_dir, name + ".pex") for name, _ in EXECUTABLES]
    if not force and os.path.exists(os.path.join(build_dir, ".complete")):
        shutil.rmtree(staging)
        log("sources %s already built in %s" % (key, build_dir))
        return build_dir, paths
    shutil.rmtree(build_dir, ignore_errors=True)
    os.makedirs(build_dir)
    src = os.path.join(build_dir, "src")
    os.rename(staging, src)
    log("building %d pex files for sources %s into %s" % (len(paths), key, build_dir))
    with tempfile.TemporaryDirectory(prefix="thermos-build-") as work:
        build_all(src, build_dir, work)
    open(os.path.join(build_dir, ".complete"), "w").close()
    prune(cache_root, keep=KEEP_BUILDS)
    return build_dir, paths


def prune(cache_root: str, keep: int) -> None:
    """Remove all but the `keep` newest complete builds (each source change makes a new one)."""
    done = [os.path.join(cache_root, d) for d in os.listdir(cache_root)
            if os.path.exists(os.path.join(cache_root, d, ".complete"))]
    done.sort(key=lambda d: os.path.getmtime(os.path.join(d, ".complete")), reverse=True)
    for old in done[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def check_reproducible(build_dir: str, paths: list[str]) -> bool:
    """Build the same snapshot again from scratch (fresh wheels too) and compare every file's bytes."""
    with tempfile.TemporaryDirectory(prefix="thermos-rebuild-") as work:
        again = build_all(os.path.join(build_dir, "src"), os.path.join(work, "out"), work)
        same = True
        for first, second in zip(paths, again, strict=True):
            equal = sha256(first) == sha256(second)
            same &= equal
            log("%-22s %s" % (os.path.basename(first), "same bytes" if equal else "DIFFERENT bytes"))
        return same


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="packaging/build.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(HERE, "dist"), help="where the files go (default dist/)")
    p.add_argument("--cache", default=os.path.join(HERE, "build", "packaging"),
                   help="build cache, one directory per source hash (default build/packaging)")
    p.add_argument("--deb", action="store_true", help="also build the Debian package")
    p.add_argument("--check-reproducible", action="store_true", help="build twice and compare bytes")
    p.add_argument("--force", action="store_true", help="rebuild even if these sources were built")
    p.add_argument("--no-report", action="store_true", help="skip the size and start-up lines")
    args = p.parse_args(argv)
    if not os.access(TARGET_PYTHON, os.X_OK):
        print("build: %s not found; the pex files target Debian's python3 (apt-get install python3)"
              % TARGET_PYTHON, file=sys.stderr)
        return 1
    try:
        build_dir, paths = cached_build(args.cache, args.force)
        if args.deb:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import deb  # packaging/deb.py, beside this file

            try:
                paths.append(deb.build_deb(build_dir, build_dir, project_version()))
            except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
                raise BuildError("the Debian package: %s" % e) from None
        os.makedirs(args.out, exist_ok=True)
        for path in paths:
            shutil.copy2(path, os.path.join(args.out, os.path.basename(path)))
        outputs = [os.path.join(args.out, os.path.basename(p)) for p in paths]
        log("wrote %s" % ", ".join(os.path.relpath(p) for p in outputs))
        if not args.no_report:
            report([p for p in outputs if p.endswith(".pex")])
        if args.check_reproducible and not check_reproducible(
                build_dir, [p for p in paths if p.endswith(".pex")]):
            print("build: the second build differs (see above)", file=sys.stderr)
            return 1
    except BuildError as e:
        print("build: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
