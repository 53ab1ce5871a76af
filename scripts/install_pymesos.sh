#!/usr/bin/env bash
# Install http-parser 0.9.0 as a pure-Python wheel into a virtualenv, so that pymesos 0.3.15 (a
# dependency in pyproject.toml) installs on Python 3.11.
#
# Why: http-parser's sdist ships Cython output that includes longintrepr.h, which moved in 3.11, so
# `pip install pymesos` fails compiling it. Its setup.py skips the C extension on PyPy, so we build the
# wheel with sys.pypy_version_info set (workaround A of the Mesos notes); at run time http_parser.http
# falls back to the pure-Python parser, which pymesos supports. Needs only PyPI, no compiler.
# Usage: scripts/install_pymesos.sh VENV
set -euo pipefail
venv=$(cd "${1:?usage: install_pymesos.sh VENV}" && pwd)
py="$venv/bin/python"
if "$py" - <<'EOF' 2>/dev/null
import importlib.metadata as m, sys
sys.exit(0 if m.version("http-parser") == "0.9.0" else 1)
EOF
then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/pip" install -q wheel
"$venv/bin/pip" download -q --no-deps --no-binary :all: -d "$tmp" http-parser==0.9.0
tar -xzf "$tmp"/http-parser-0.9.0.tar.gz -C "$tmp"
(cd "$tmp/http-parser-0.9.0" && "$py" - "$tmp/wheels" <<'EOF'
import sys
wheel_dir = sys.argv[1]
sys.pypy_version_info = (7, 3, 0)  # setup.py then builds no C extension
sys.argv = ["setup.py", "-q", "bdist_wheel", "-d", wheel_dir]
source = open("setup.py").read()
exec(compile(source, "setup.py", "exec"), {"__name__": "__main__", "__file__": "setup.py"})
EOF
) >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; echo "install_pymesos: building the http-parser wheel failed" >&2; exit 1; }
"$venv/bin/pip" install -q --no-deps "$tmp"/wheels/http_parser-0.9.0-py3-none-any.whl
