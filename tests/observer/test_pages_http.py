"""The observer's HTML pages over plain HTTP: status codes, clear 404s, escaping, time travel.

The observer is the real `thermos_observer` service over tasks run by real thermos_runner
processes (see pages_live.py); the browser-side behaviour is in test_pages_browser.py.
"""

import html
import json
import os
import re
import urllib.parse

import pytest

from tests.observer.pages_live import EVIL, EVIL_OUTPUT, EVIL_PROCESS, build_pages, snapshot_state
from thermos.testing.wait import wait_until


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = build_pages(tmp_path_factory.mktemp("pages-http"))
    try:
        yield root
    finally:
        root.close()


def q(text):
    return urllib.parse.quote(text, safe="")


def page(service, path, status=200):
    code, ctype, body = service.get(path)
    assert code == status, (path, code, body[:500])
    assert ctype.startswith("text/html"), (path, ctype)
    return body.decode()


@pytest.fixture(scope="module")
def ready(service):
    """The service once it has seen every task (its first refresh may race the last runner)."""
    wait_until(lambda: len(service.json("/j/task_ids/all/0/100")["tasks"]) == 7, timeout=30)
    return service


def test_index_lists_active_and_finished_tasks(ready):
    body = page(ready, "/")
    assert "<title>thermos(" in body
    for task_id in ("hello_active", "ticker", "hello_ok", "hello_fail", "hello_killed", "flaky"):
        assert 'data-task-id="%s"' % task_id in body
    assert re.search(r'data-count="active">2<', body) and re.search(r'data-count="finished">5<', body)
    assert 'data-url="/main/active/0/20"' in body and 'data-url="/main/finished/0/20"' in body


def test_main_fragment_pages_by_offset_and_num(ready):
    first = page(ready, "/main/finished/0/2")
    assert "<html" not in first  # a fragment, as Aurora's /main
    assert first.count("data-task-id=") == 2
    assert 'href="/main/finished/2/2"' in first and "older" in first
    second = page(ready, "/main/finished/2/2")
    assert 'href="/main/finished/0/2"' in second and "newer" in second
    ids = set(re.findall(r'data-task-id="([^"]+)"', first + second + page(ready, "/main/finished/4/2")))
    assert ids == {"hello_ok", "hello_fail", "hello_killed", "flaky", html.escape(EVIL)}


@pytest.mark.parametrize("path", ["/main/bogus", "/main/active/x/20", "/main/active/0/0",
                                  "/main/active/0/abc"])
def test_main_rejects_bad_type_offset_num(ready, path):
    code, _, body = ready.get(path)
    assert code == 404 and b"use" in body


def test_task_page_shows_processes_statuses_and_log_links(ready):
    body = page(ready, "/task/hello_fail")
    assert snapshot_state(body) == "FAILED"
    assert 'data-process="main" data-state="FAILED"' in body
    assert 'href="/logs/hello_fail/main/0/stderr"' in body
    assert 'href="/process/hello_fail/main"' in body
    page_data = json.loads(html.unescape(re.search(
        r'<script type="application/json" id="page-data">(.*?)</script>', body, re.S).group(1)))
    assert [r["state"] for r in page_data["timeline"]["processes"]["main"]] == ["FAILED"]


def test_unknown_task_is_a_404_page_that_names_it(ready):
    for path in ("/task/no_such_task", "/rawtask/no_such_task", "/process/no_such_task/main",
                 "/logs/no_such_task/main/0/stdout", "/browse/no_such_task"):
        body = page(ready, path, status=404)
        assert "Unknown task_id: no_such_task" in body, path


def test_unknown_process_run_or_log_type_is_a_404_page(ready):
    assert "Invalid task/process combination: hello_ok/nope" in page(ready, "/process/hello_ok/nope", 404)
    assert "has no run 7" in page(ready, "/logs/hello_ok/hello/7/stdout", 404)
    assert "Unknown log type" in page(ready, "/logs/hello_ok/hello/0/stdlog", 404)


def test_process_page_lists_every_run_newest_first(ready):
    body = page(ready, "/process/flaky/flaky")
    assert re.findall(r'<tr data-run="(\d+)">', body) == ["2", "1", "0"]
    assert "echo attempt; exit 1" in body


def test_rawtask_is_the_escaped_task_record(ready):
    body = page(ready, "/rawtask/" + q(EVIL))
    record = json.loads(html.unescape(re.search(r'<pre class="json" id="rawtask">(.*?)</pre>', body, re.S)
                                      .group(1)))
    assert record["processes"][0]["name"] == EVIL_PROCESS


def test_time_travel_rebuilds_a_past_state(ready):
    timeline = ready.json("/j/timeline/hello_ok")
    assert snapshot_state(page(ready, "/task/hello_ok")) == "SUCCESS"
    launched = int(timeline["start"] * 1000)
    past = page(ready, "/task/hello_ok?at=%d" % launched)
    assert snapshot_state(past) == "ACTIVE"
    assert "Time travel: the task as it was at" in past
    assert 'data-process="hello" data-state="SUCCESS"' not in past


def test_time_travel_before_the_launch_says_so(ready):
    body = html.unescape(page(ready, "/task/hello_ok?at=1000", 404))
    assert "Task hello_ok did not exist yet at 1970-01-01 00:00:01 UTC: it was launched at 20" in body


def test_bad_time_travel_moment_is_a_400_page(ready):
    body = page(ready, "/task/hello_ok?at=yesterday", 400)
    assert "Bad at=yesterday: give a time as epoch milliseconds" in body


def test_html_in_ids_names_and_output_is_escaped_everywhere(ready):
    paths = ["/", "/main/finished/0/20", "/task/" + q(EVIL), "/rawtask/" + q(EVIL),
             "/process/%s/%s" % (q(EVIL), q(EVIL_PROCESS)),
             "/logs/%s/%s/0/stdout" % (q(EVIL), q(EVIL_PROCESS)),
             "/browse/" + q(EVIL)]
    for path in paths:
        body = page(ready, path)
        for raw in (EVIL, EVIL_PROCESS, "<script>alert"):
            assert raw not in body, (path, raw)
    assert html.escape(EVIL, quote=False) in page(ready, "/task/" + q(EVIL))
    code, _, data = ready.get("/logdata/%s/%s/0/stdout?offset=0" % (q(EVIL), q(EVIL_PROCESS)))
    assert code == 200 and html.unescape(json.loads(data)["data"]) == EVIL_OUTPUT + "\n"


def test_file_browser_lists_and_views_sandbox_files(ready, live):
    body = page(ready, "/browse/hello_ok")
    assert 'data-name="out.txt" data-kind="file"' in body and 'data-name=".logs" data-kind="dir"' in body
    assert 'href="/file/hello_ok/out.txt"' in body and 'href="/download/hello_ok/out.txt"' in body
    logs = page(ready, "/browse/hello_ok/.logs/hello/0")
    assert 'href="/file/hello_ok/.logs/hello/0/stdout"' in logs
    assert 'href="/browse/hello_ok/.logs/hello"' in logs  # ..
    viewer = page(ready, "/file/hello_ok/out.txt")
    assert '"data_url": "/filedata/hello_ok/out.txt"' in viewer
    assert page(ready, "/file/hello_ok/missing.txt", 404).count("No such file: missing.txt")
    assert "No such directory: out.txt" in page(ready, "/browse/hello_ok/out.txt", 404)


@pytest.mark.parametrize("path", ["/browse/hello_ok/../../..", "/browse/hello_ok/%2e%2e/%2e%2e",
                                  "/file/hello_ok/..%2f..%2fetc/passwd", "/file/hello_ok/a%00b",
                                  "/file/hello_ok//etc/passwd", "/browse/hello_ok//etc",
                                  "/file/hello_ok/%2fetc/passwd"])
def test_traversal_out_of_the_sandbox_is_refused(ready, path):
    code, _, body = ready.get(path)
    assert code == 400 and b"Refused path" in body, (path, code, body[:300])
    assert b"root:" not in body


def test_symlink_leaving_the_sandbox_is_refused(ready, live):
    os.symlink("/etc", os.path.join(live.sandbox("hello_ok"), "escape"))
    body = page(ready, "/browse/hello_ok/escape", 403)
    assert "resolves outside the task's sandbox" in html.unescape(body)
    assert page(ready, "/file/hello_ok/escape/passwd", 403).count("Refused")


def test_assets_are_served(ready):
    for name, kind in (("observer.js", "javascript"), ("observer.css", "text/css"), ("favicon.svg", "svg")):
        code, ctype, body = ready.get("/assets/" + name)
        assert code == 200 and kind in ctype and body
