"""thermos_observer as a service: starts, serves, stops cleanly on SIGTERM, refuses bad setups."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from thermos.observer import summary_cache

from tests.observer.live import REPO, ObserverService


def run_observer(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "thermos.observer.main", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_starts_serves_and_stops_on_sigterm(live, tmp_path):
    state = str(tmp_path / "state")
    service = ObserverService(live.root, state)
    try:
        assert service.get("/health")[0::2] == (200, b"OK")
        assert service.json("/j/task_id_count")["all"] == 5
        assert service.stop(signal.SIGTERM) == 0
    finally:
        service.close()
    assert "Stopped" in service.log() and "Traceback" not in service.log()
    cached = summary_cache.load(state)  # written on the way out
    assert {task_id for _root, task_id in cached} == {"hello_ok", "hello_fail", "hello_killed",
                                                      "hello_active", "ticker"}


def test_sigint_stops_it_too(live, tmp_path):
    service = ObserverService(live.root, str(tmp_path / "state"), "--disable_task_resource_collection")
    try:
        assert service.json("/j/task_ids/active")["task_count"] == 2
        assert service.stop(signal.SIGINT) == 0
    finally:
        service.close()


def test_port_in_use_is_one_line_and_exit_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_observer("--root", str(tmp_path), "--mesos-root", "", "--ip", "127.0.0.1",
                              "--port", str(port), "--state_dir", "")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "thermos_observer: error: cannot listen on 127.0.0.1:%d: Address already in use "
        "(pick another --port or --ip)" % port)


def test_state_dir_inside_a_root_is_refused(tmp_path):
    result = run_observer("--root", str(tmp_path), "--mesos-root", "", "--state_dir", str(tmp_path / "cache"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "thermos_observer: error: --state_dir %s is inside the observed root %s (the observer only reads "
        "there; give a directory of its own, e.g. /var/lib/thermos/observer)\n" % (
            tmp_path / "cache", tmp_path))
    assert not os.path.exists(tmp_path / "cache")


def test_bad_flags_are_one_line(tmp_path):
    result = run_observer("--polling_interval_secs", "0")
    assert result.returncode == 2
    assert result.stderr.endswith("error: argument --polling_interval_secs: '0' must be more than 0 seconds "
                                  "(see 'thermos_observer --help')\n")
    bad_path = run_observer("--root", str(tmp_path), "--mesos-root", "", "--state_dir", "",
                            "--enable_mesos_disk_collector", "--disk_usage_json_path", "a[")
    assert bad_path.returncode == 2 and len(bad_path.stderr.strip().splitlines()) == 1
    assert "disk_usage_json_path 'a[' is not a JMESPath expression" in bad_path.stderr
