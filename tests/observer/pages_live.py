"""Tasks for the page tests: the observer's shared live root plus a few the pages need.

On top of tests/observer/live.py's tasks (hello_ok, hello_fail, hello_killed, hello_active, ticker):
* flaky: one process that fails three times (three runs: the timeline draws three bars);
* EVIL (a task id and a process name that are HTML), which prints HTML on stdout.
"""

from __future__ import annotations

import re

from tests.cli.live import make_task
from tests.observer.live import LiveRoot, build

EVIL = "<img src=x onerror=alert(1)>"
EVIL_PROCESS = "<img src=y onerror=alert(2)>"
EVIL_OUTPUT = "<script>alert(3)</script> & more"


def build_pages(base) -> LiveRoot:
    root = build(base)
    try:
        root.run("flaky", make_task("flaky", "echo attempt; exit 1", max_failures=3, process="flaky"))
        root.run(EVIL, make_task("evil", "echo '%s'" % EVIL_OUTPUT, process=EVIL_PROCESS))
    except BaseException:
        root.close()
        raise
    return root


def snapshot_state(html: str) -> str:
    """The task state the task page's snapshot shows."""
    found = re.search(r'<div id="snapshot" data-state="([A-Z]+)"', html)
    assert found, html[:2000]
    return found.group(1)
