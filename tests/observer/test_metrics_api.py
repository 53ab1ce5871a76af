"""/metrics (Prometheus), /vars, /vars/<name>, /vars.json and /health over HTTP."""

from __future__ import annotations

import re

from thermos.testing.wait import wait_until


def test_metrics_expose_task_and_process_state(service):
    code, ctype, body = service.get("/metrics")
    text = body.decode()
    assert code == 200 and ctype.startswith("text/plain; version=")
    for task_id, state in (("hello_ok", "SUCCESS"), ("hello_fail", "FAILED"), ("hello_killed", "KILLED"),
                           ("hello_active", "ACTIVE")):
        assert 'thermos_task_state{state="%s",task_id="%s"} 1.0' % (state, task_id) in text
    assert 'thermos_process_state{process="main",state="RUNNING",task_id="hello_active"} 1.0' in text
    assert 'thermos_process_restarts{process="main",task_id="ticker"} 0.0' in text
    assert 'thermos_tasks{state="ACTIVE"} 2.0' in text and 'thermos_tasks{state="KILLED"} 1.0' in text
    assert 'thermos_observer_tasks{type="finished"} 3.0' in text
    assert re.search(r"^thermos_observer_refresh_seconds \d", text, re.M)
    assert re.search(r"^thermos_observer_refreshes_total \d", text, re.M)
    assert re.search(r"^thermos_observer_process_resident_memory_bytes \d", text, re.M)


def test_metrics_carry_resources_of_running_processes(service):
    def rss():
        text = service.get("/metrics")[2].decode()
        found = re.search(r'^thermos_process_rss_bytes\{process="main",task_id="ticker"\} (\S+)', text, re.M)
        return text if found and float(found.group(1)) > 0 else None

    text = wait_until(rss, timeout=30, interval=0.1)
    assert re.search(r'^thermos_task_rss_bytes\{task_id="ticker"\} [1-9]', text, re.M)
    assert re.search(r'^thermos_task_cpu_cores\{task_id="ticker"\} ', text, re.M)
    assert 'thermos_task_rss_bytes{task_id="hello_ok"}' not in text  # finished: no resource series


def test_vars_and_health(service):
    assert service.get("/health")[0::2] == (200, b"OK")
    code, ctype, body = service.get("/vars")
    lines = body.decode().splitlines()
    assert code == 200 and ctype.startswith("text/plain")
    assert lines == sorted(lines) and "observer.tasks.all 5" in lines
    assert any(line.startswith("sys.uptime ") for line in lines)
    assert service.get("/vars/observer.tasks.active")[0::2] == (200, b"2\n")
    assert service.get("/vars/nope")[0::2] == (404, b"Unknown exported variable: nope\n")
    data = service.json("/vars.json")
    assert data["observer.tasks.finished"] == 3 and "--polling_interval_secs" in data["sys.argv"]
