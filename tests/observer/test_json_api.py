"""Every JSON endpoint of thermos_observer, over plain HTTP, on tasks run by thermos_runner."""

from __future__ import annotations

import os
import time

from thermos.testing.wait import wait_until

KINDS = {"hello_ok": "SUCCESS", "hello_fail": "FAILED", "hello_killed": "KILLED",
         "hello_active": "ACTIVE", "ticker": "ACTIVE"}


def test_task_ids_lists_every_task_with_its_state(service):
    data = service.json("/j/task_ids")
    assert data["type"] == "all" and data["offset"] == 0 and data["num"] == 20
    assert data["task_count"] == 5
    rows = {row["task_id"]: row for row in data["tasks"]}
    assert {task_id: row["state"] for task_id, row in rows.items()} == KINDS
    row = rows["hello_fail"]
    assert row["name"] == "hello_fail" and row["role"] == rows["hello_ok"]["role"]
    assert row["launch_timestamp"] <= row["state_timestamp"] <= time.time()
    assert {"cpu", "ram", "disk", "rss", "threads"} <= set(row)


def test_task_ids_by_type_and_paging(service):
    active = service.json("/j/task_ids/active")
    assert {row["task_id"] for row in active["tasks"]} == {"hello_active", "ticker"}
    finished = service.json("/j/task_ids/finished/0/2")
    assert finished["task_count"] == 3 and len(finished["tasks"]) == 2
    rest = service.json("/j/task_ids/finished/2/2")
    assert len(rest["tasks"]) == 1
    seen = [row["task_id"] for row in finished["tasks"] + rest["tasks"]]
    assert sorted(seen) == ["hello_fail", "hello_killed", "hello_ok"]
    # Aurora: a negative offset counts from the end when it fits, else starts at 0.
    assert service.json("/j/task_ids/finished/-1/5")["offset"] == 2
    assert service.json("/j/task_ids/finished/-7/5")["offset"] == 0


def test_task_ids_refuses_unknown_types_and_bad_numbers(service):
    assert service.json("/j/task_ids/bogus", 404) == {
        "error": "Unknown task type 'bogus' (use active, finished or all)"}
    assert "Bad offset 'x'" in service.json("/j/task_ids/all/x", 400)["error"]


def test_task_id_count(service):
    assert service.json("/j/task_id_count") == {"active": 2, "finished": 3, "all": 5}


def test_task_of_each_kind(service, live):
    data = service.json("/j/task?task_id=hello_ok,hello_fail,hello_killed,hello_active")
    assert {task_id: task["state"] for task_id, task in data.items()} == {
        task_id: state for task_id, state in KINDS.items() if task_id != "ticker"}
    ok = data["hello_ok"]
    assert ok["processes"] == {"waiting": [], "running": [], "success": ["hello"], "failed": [], "killed": []}
    assert ok["task"]["name"] == "hello_ok" and ok["task"]["processes"][0]["name"] == "hello"
    assert ok["sandbox"] == live.sandbox("hello_ok")
    assert [s["state"] for s in ok["statuses"]][::len(ok["statuses"]) - 1] == ["ACTIVE", "SUCCESS"]
    assert data["hello_fail"]["processes"]["failed"] == ["main"]
    assert data["hello_killed"]["processes"]["killed"] == ["main"]
    assert data["hello_active"]["processes"]["running"] == ["main"]
    assert service.json("/j/task/hello_ok") == {"hello_ok": ok}
    assert service.json("/j/task") == {}


def test_unknown_task_ids_are_404_with_a_message(service):
    assert service.json("/j/task/nope", 404) == {"error": "Unknown task_id: nope"}
    assert service.json("/j/task?task_id=hello_ok,nope,other", 404) == {
        "error": "Unknown task_id: nope, other"}
    assert service.json("/j/process/nope/main", 404) == {"error": "Unknown task_id: nope"}
    assert service.json("/j/processes?task_id=nope", 404) == {"error": "Unknown task_id: nope"}
    assert service.json("/j/timeline/nope", 404) == {"error": "Unknown task_id: nope"}


def test_process_latest_and_by_run(service, live):
    failed = service.json("/j/process/hello_fail/main")
    assert failed["state"] == "FAILED" and failed["return_code"] == 3 and failed["process_run"] == 0
    assert failed["start_time"] <= failed["stop_time"]
    ok = service.json("/j/process/hello_ok/hello/0")
    assert ok["state"] == "SUCCESS" and "return_code" not in ok  # Aurora omits a zero return code
    assert service.json("/j/process/hello_ok/hello/-1") == ok
    assert service.json("/j/process/hello_ok") == {}


def test_unknown_processes_and_runs_are_404(service):
    assert service.json("/j/process/hello_ok/nope", 404) == {
        "error": "Invalid task/process combination: hello_ok/nope"}
    assert service.json("/j/process/hello_ok/hello/5", 404) == {
        "error": "Process hello of task hello_ok has no run 5 (it has 1)"}


def test_running_process_reports_its_resources(service, live):
    def used():
        data = service.json("/j/process/hello_active/main")
        return data.get("used") if data.get("used", {}).get("rss", 0) > 0 else None

    assert service.json("/j/process/hello_active/main")["state"] == "RUNNING"
    sample = wait_until(used, timeout=30, interval=0.1)
    assert sample["threads"] >= 1 and sample["status"] in ("sleeping", "running")


def test_processes_of_several_tasks(service):
    data = service.json("/j/processes?task_id=hello_ok,hello_killed")
    assert set(data) == {"hello_ok", "hello_killed"}
    assert data["hello_ok"]["hello"]["state"] == "SUCCESS"
    assert data["hello_killed"]["main"]["state"] == "KILLED"


def test_active_task_rows_carry_samples_and_history(service):
    def sampled():
        rows = {row["task_id"]: row for row in service.json("/j/task_ids/active")["tasks"]}
        return rows["ticker"] if rows["ticker"]["ram"] > 0 else None

    row = wait_until(sampled, timeout=30, interval=0.1)
    assert row["rss"] == row["ram"] > 0
    history = wait_until(lambda: service.json("/j/history/ticker")["samples"], timeout=30, interval=0.1)
    assert history[-1]["ram"] > 0 and history[-1]["timestamp"] <= time.time()
    assert service.json("/j/history/hello_ok")["samples"] == []


def test_disk_usage_of_an_active_sandbox(service, live):
    with open(os.path.join(live.sandbox("hello_active"), "blob"), "wb") as fp:
        fp.write(os.urandom(256 * 1024))

    def disk():
        row = service.json("/j/task/hello_active")["hello_active"]["resource_consumption"]
        return row["disk"] if row["disk"] >= 256 * 1024 else None

    assert wait_until(disk, timeout=30, interval=0.1) >= 256 * 1024


def test_time_travel_rebuilds_a_past_state(service):
    timeline = service.json("/j/timeline/hello_fail")
    [run] = timeline["processes"]["main"]
    assert run["state"] == "FAILED" and run["return_code"] == 3
    during = int(run["started"] * 1000) + 1
    assert during < run["stopped"] * 1000
    past = service.json("/j/task/hello_fail?at=%d" % during)["hello_fail"]
    assert past["at"] == during and past["state"] == "ACTIVE"
    assert past["processes"]["running"] == ["main"] and past["processes"]["failed"] == []
    after = service.json("/j/task/hello_fail?at=%d" % int(time.time() * 1000))["hello_fail"]
    assert after["state"] == "FAILED" and after["processes"]["failed"] == ["main"]
    assert service.json("/j/task/hello_fail?at=%d" % (int(timeline["start"] * 1000) - 1000)) == {
        "hello_fail": {}}
    assert "Bad at" in service.json("/j/task/hello_fail?at=noon", 400)["error"]


def test_timeline_of_a_killed_task(service):
    timeline = service.json("/j/timeline/hello_killed")
    [run] = timeline["processes"]["main"]
    assert run["state"] == "KILLED"
    assert run["waiting"] <= run["forked"] <= run["started"] <= run["stopped"]
    assert [s["state"] for s in timeline["statuses"]][-1] == "KILLED"
    assert timeline["start"] <= run["waiting"] and timeline["end"] >= run["stopped"]
    live_timeline = service.json("/j/timeline/ticker")
    assert live_timeline["processes"]["main"][-1]["stopped"] is None
    assert live_timeline["state"] == "ACTIVE" and live_timeline["now"] >= live_timeline["start"]
