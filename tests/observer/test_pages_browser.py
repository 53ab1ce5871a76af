"""The observer's pages in real headless Chromium, over tasks run by real thermos_runner processes.

What an operator would notice: the list shows the tasks and refreshes itself, the task page draws
its process timeline and resource charts, the time-travel slider shows a past state, the log
viewer follows output as it is written, HTML in ids/names/output stays text, and no page logs a
JavaScript error. A screenshot of a task page is saved in the test's tmp dir (path printed).
"""

import json
import os
import re
import urllib.parse

import pytest

from tests.cli.live import make_task
from tests.observer.pages_live import EVIL, EVIL_OUTPUT, EVIL_PROCESS, build_pages
from thermos.testing.chromium import CHROMIUM, Chromium
from thermos.testing.wait import wait_until

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason="needs the Debian chromium package (./dev installs it)")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = build_pages(tmp_path_factory.mktemp("pages-browser"))
    try:
        yield root
    finally:
        root.close()


@pytest.fixture(scope="module")
def ready(service):
    wait_until(lambda: len(service.json("/j/task_ids/all/0/100")["tasks"]) == 7, timeout=30)
    return service


@pytest.fixture(scope="module")
def chromium():
    with Chromium() as browser:
        yield browser


@pytest.fixture
def browser(chromium):
    """The module's browser, with this test's console errors only."""
    chromium.console_errors.clear()
    chromium.dialogs.clear()
    return chromium


def q(text):
    return urllib.parse.quote(text, safe="")


def js(value):
    return json.dumps(value)


def test_task_list_shows_active_and_finished_tasks(ready, browser):
    browser.navigate(ready.url + "/")
    active = browser.evaluate(
        "[...document.querySelectorAll('[data-list=active] tr[data-task-id]')].map(r => r.dataset.taskId)")
    assert sorted(active) == ["hello_active", "ticker"]
    assert browser.evaluate("document.querySelector('[data-list=finished]').hidden") is True
    browser.evaluate("document.querySelector('.tabs button[data-tab=finished]').click()")
    assert browser.evaluate("document.querySelector('[data-list=finished]').hidden") is False
    finished = browser.evaluate(
        "[...document.querySelectorAll('[data-list=finished] tr[data-task-id]')].map(r => r.dataset.taskId)")
    assert sorted(finished) == sorted(["hello_ok", "hello_fail", "hello_killed", "flaky", EVIL])
    states = browser.evaluate("Object.fromEntries([...document.querySelectorAll('tr[data-task-id]')]"
                              ".map(r => [r.dataset.taskId, r.querySelector('.state').textContent]))")
    assert states["hello_fail"] == "FAILED" and states["hello_killed"] == "KILLED"
    assert states["hello_ok"] == "SUCCESS" and states["ticker"] == "ACTIVE"
    color = browser.evaluate("getComputedStyle(document.querySelector('tr[data-task-id=hello_fail] .state'))"
                             ".backgroundColor")
    assert color == "rgb(214, 69, 69)"  # failed is red
    assert browser.console_errors == []


def test_task_page_draws_the_process_timeline_and_charts(ready, browser, tmp_path):
    browser.navigate(ready.url + "/task/flaky")
    browser.wait_for("document.body.dataset.ready")
    bars = browser.evaluate("[...document.querySelectorAll('#timeline svg rect.run')]"
                            ".map(r => [r.dataset.process, r.dataset.run, r.dataset.state])")
    assert bars == [["flaky", "0", "FAILED"], ["flaky", "1", "FAILED"], ["flaky", "2", "FAILED"]]
    fills = browser.evaluate("[...document.querySelectorAll('#timeline rect.run')]"
                             ".map(r => getComputedStyle(r).fill)")
    assert set(fills) == {"rgb(214, 69, 69)"}
    task_states = browser.evaluate("[...document.querySelectorAll('#timeline rect.task-state')]"
                                   ".map(r => r.dataset.state)")
    assert task_states[0] == "ACTIVE" and task_states[-1] == "FAILED"
    # Hovering a bar shows its times.
    tip = browser.evaluate("""(() => { const r = document.querySelectorAll('#timeline rect.run')[1];
        const b = r.getBoundingClientRect();
        r.dispatchEvent(new MouseEvent('mousemove', {clientX: b.x + 1, clientY: b.y + 1, bubbles: true}));
        return document.getElementById('tooltip').textContent; })()""")
    assert tip.startswith("flaky · run 1 · FAILED") and "started" in tip and "exit code 1" in tip
    path = browser.screenshot(str(tmp_path / "task-flaky.png"))
    print("screenshot of the flaky task page:", path)

    # A live task: its charts fill in as the sampler (every 0.5 s here) adds samples.
    browser.navigate(ready.url + "/task/ticker?refresh=0.5")
    browser.wait_for("document.querySelectorAll('#chart-cpu svg path.line').length === 1 && "
                     "document.querySelectorAll('#chart-ram svg path.line').length === 1", timeout=60)
    assert browser.evaluate("document.querySelectorAll('#timeline rect.run').length") == 1
    assert browser.evaluate("document.querySelector('#timeline rect.run').dataset.state") == "RUNNING"
    ram = browser.evaluate("document.querySelector('#chart-ram text.now').textContent")
    assert re.fullmatch(r"[\d.]+ (KiB|MiB)", ram), ram
    path = browser.screenshot(str(tmp_path / "task-ticker.png"))
    print("screenshot of the ticker task page:", path)
    assert os.path.getsize(path) > 10000
    assert browser.console_errors == []


def test_time_travel_slider_shows_a_past_state(ready, browser):
    browser.navigate(ready.url + "/task/flaky")
    browser.wait_for("document.body.dataset.ready")
    assert browser.evaluate("document.getElementById('snapshot').dataset.state") == "FAILED"
    # Drag the slider to the very start: the task was just launched.
    browser.evaluate("""(() => { const s = document.getElementById('travel'); s.value = s.min;
        s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); })()""")
    browser.wait_for("document.getElementById('snapshot').dataset.state === 'ACTIVE'")
    assert "at=" in browser.evaluate("location.search")
    assert browser.evaluate("document.getElementById('travel-banner') !== null")
    assert browser.evaluate("document.querySelector('tr[data-process=flaky]').dataset.state") != "FAILED"
    # Click the second run's bar: the task is still ACTIVE and has (at least) two runs.
    browser.evaluate("document.querySelectorAll('#timeline rect.run')[1].dispatchEvent("
                     "new MouseEvent('click', {bubbles: true}))")
    runs = "Number(document.querySelector('tr[data-process=flaky] td:nth-child(3)').textContent)"
    browser.wait_for(runs + " >= 2 && document.getElementById('snapshot').dataset.state === 'ACTIVE'")
    # The end button comes back to the final state.
    browser.evaluate("document.getElementById('travel-live').click()")
    browser.wait_for("document.getElementById('snapshot').dataset.state === 'FAILED'")
    assert browser.evaluate("location.search") == ""
    assert browser.console_errors == []


def test_log_view_follows_new_output(ready, browser):
    browser.navigate(ready.url + "/logs/ticker/main/0/stdout?refresh=0.2")
    first = browser.wait_for("(document.getElementById('log').textContent.match(/tick (\\d+)\\n$/) || [])[1]")
    later = int(first) + 3
    browser.wait_for("document.getElementById('log').textContent.includes('tick %d\\n')" % later, timeout=30)
    text = browser.evaluate("document.getElementById('log').textContent")
    numbers = [int(n) for n in re.findall(r"tick (\d+)", text)]
    assert numbers == list(range(numbers[0], numbers[-1] + 1))  # nothing lost or repeated
    assert "following" in browser.evaluate("document.getElementById('follow-status').textContent")
    assert browser.console_errors == []


def test_html_in_ids_names_and_output_stays_text(ready, browser):
    browser.navigate(ready.url + "/task/" + q(EVIL))
    browser.wait_for("document.body.dataset.ready")
    assert browser.evaluate("document.getElementById('task-title').textContent") == EVIL
    assert browser.evaluate("document.querySelector('#timeline .lane-label[data-name]').dataset.name") == \
        EVIL_PROCESS
    assert browser.evaluate("document.querySelector('#timeline rect.run').dataset.process") == EVIL_PROCESS
    link = browser.evaluate("document.querySelector('tr[data-process] td.name a').textContent")
    assert link == EVIL_PROCESS
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    browser.navigate(ready.url + "/logs/%s/%s/0/stdout" % (q(EVIL), q(EVIL_PROCESS)))
    browser.wait_for("document.getElementById('log').textContent === %s" % js(EVIL_OUTPUT + "\n"))
    assert browser.evaluate("document.querySelectorAll('#log *').length") == 0
    assert browser.dialogs == [] and browser.console_errors == []


def test_file_browser_opens_a_file(ready, browser):
    browser.navigate(ready.url + "/browse/hello_ok")
    browser.evaluate("document.querySelector('tr[data-name=\"out.txt\"] td.name a').click()")
    browser.wait_for("location.pathname === '/file/hello_ok/out.txt'")
    browser.wait_for("document.readyState === 'complete' && document.getElementById('log') && "
                     "document.getElementById('log').textContent === 'data\\n'")
    assert browser.console_errors == []


def test_unknown_task_is_a_clear_404_page(ready, browser):
    browser.navigate(ready.url + "/task/no_such_task")
    assert browser.evaluate("document.getElementById('error-message').textContent") == \
        "Unknown task_id: no_such_task"
    assert browser.evaluate("document.querySelector('.error-page .code').textContent") == "404"


def test_task_list_updates_itself(ready, browser, live):
    browser.navigate(ready.url + "/?refresh=0.5")
    assert browser.evaluate("document.querySelector('tr[data-task-id=late_arrival]')") is None
    live.start("late_arrival", make_task("late_arrival", "echo hi; exec sleep 300"))
    browser.wait_for("document.querySelector('[data-list=active] tr[data-task-id=late_arrival]') !== null",
                     timeout=30)
    assert browser.wait_for("document.querySelector('[data-count=active]').textContent === '3'")
    assert browser.console_errors == []


def test_every_page_loads_without_javascript_errors(ready, browser, tmp_path):
    launched = int(ready.json("/j/timeline/hello_ok")["start"] * 1000)
    pages = ["/", "/main/finished/0/2", "/task/hello_killed", "/task/hello_ok?at=%d" % launched,
             "/process/flaky/flaky",
             "/logs/hello_fail/main/0/stderr", "/browse/hello_ok/.logs", "/file/hello_ok/out.txt",
             "/rawtask/hello_ok"]
    for path in pages:
        browser.navigate(ready.url + path)
        browser.wait_for("document.readyState === 'complete'")
        assert browser.console_errors == [], path
    browser.navigate(ready.url + "/process/flaky/flaky")
    print("screenshot of a process page:", browser.screenshot(str(tmp_path / "process.png")))
    assert browser.evaluate("[...document.querySelectorAll('tr[data-run]')].map(r => r.dataset.run)") == \
        ["2", "1", "0"]
