"""The README's main job: run an example task under the runner and show what an operator sees.

Runs examples/ordered.thermos (setup -> server, then a finalizer) with `thermos run` against a
checkpoint root in ./demo-root, then shows it with `thermos status -v`, `thermos read` and
`thermos tail`. Pass another example as the first argument to run that one instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def thermos(*args: str) -> int:
    print("\n$ thermos %s" % " ".join(args), flush=True)
    return subprocess.call([sys.executable, "-m", "thermos.cli.main", *args])


def main() -> int:
    example = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "examples", "ordered.thermos")
    root = os.path.join(HERE, "demo-root")
    shutil.rmtree(root, ignore_errors=True)
    task_id = "demo-" + os.path.splitext(os.path.basename(example))[0]
    rc = thermos("--root", root, "run", "--sandbox", os.path.join(root, "sandbox"), "--task_id", task_id,
                 example)
    if rc != 0:
        return rc
    thermos("--root", root, "status", "-vvv")
    thermos("--root", root, "read", os.path.join(root, "checkpoints", task_id, "runner"))
    thermos("--root", root, "tail", task_id, "server") if "ordered" in example else None
    print("\nCheckpoints, task records and logs are under %s" % root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
