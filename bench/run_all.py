"""Run every benchmark in bench/ in turn (each prints its figures beside its same-run baseline).

Usage: python bench/run_all.py [NAME ...]   e.g. `./dev bench runner checkpoint_replay`
"""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    wanted = set(sys.argv[1:])
    scripts = sorted(name for name in os.listdir(HERE)
                     if name.endswith(".py") and name not in ("run_all.py", "__init__.py")
                     and not name.startswith("_"))
    failed = []
    for script in scripts:
        name = script[:-3]
        if wanted and name not in wanted:
            continue
        print("=== %s" % name, flush=True)
        if subprocess.call([sys.executable, os.path.join(HERE, script)]) != 0:
            failed.append(name)
    if failed:
        print("benchmarks that failed: %s" % ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
