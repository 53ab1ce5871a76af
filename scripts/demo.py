"""`./dev demo`: the whole Thermos stack on this host, without Mesos, in well under a minute.

A stand-in Mesos agent (thermos.testing.mesos_agent, the real v1 executor HTTP API) launches
thermos_executor with an Aurora task: a small web server with an HTTP health check, and a
finalizer. thermos_observer watches the agent's work_dir; then the task is killed (the finalizer
runs) and gc_executor collects it. One line per step says what to look at. Everything lives in
./demo-root and nothing is left running.

    ./dev demo                       the venv's commands
    ./dev demo --bin dist            the pex files `./dev package` built (run by /usr/bin/python3 -I)
    ./dev demo --linger 60           keep the observer up 60 s before the kill, to browse it
    ./dev demo examples/X.thermos    one example under `thermos run`, then status, read and tail
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from thermos.executor.task_info import encode_assigned_task  # noqa: E402
from thermos.gc.executor import encode_retained  # noqa: E402

from thermos.gen.aurora.ttypes import (  # noqa: E402
    AssignedTask,
    ExecutorConfig,
    Identity,
    JobKey,
    Resource,
    TaskConfig,
)
from thermos.testing.mesos_agent import MesosAgent  # noqa: E402

TIMEOUT = 40.0  # bound on each step; the whole demo normally takes about 10 s
TASK_ID = "www-data-prod-hello-0-demo"
STEPS = 7


class DemoError(Exception):
    """A step did not reach its outcome; str() says which and where to look."""


def step(n: int, what: str, line: str) -> None:
    print("%d/%d %-9s %s" % (n, STEPS, what, line), flush=True)


def wait(predicate: Callable[[], Any], what: str, where: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise DemoError("no %s within %.0f s; see %s" % (what, timeout, where))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(bin_dir: str, name: str) -> list[str]:
    """`<bin>/<name>.pex` under the system Python (a clean interpreter), else `<bin>/<name>`."""
    pex = os.path.join(bin_dir, name + ".pex")
    if os.path.isfile(pex):
        return ["/usr/bin/python3", "-I", pex]
    path = os.path.join(bin_dir, name)
    if not os.access(path, os.X_OK):
        raise DemoError("%s not found in %s (./dev package builds the pex files into dist/)"
                        % (name, bin_dir))
    return [path]


def aurora_task(port: int) -> bytes:
    """TaskInfo.data as Aurora's scheduler sends it: an AssignedTask whose config is a MesosJob."""
    processes = [
        {"name": "setup", "cmdline": "printf ok > health && echo '<h1>hello from Thermos</h1>' > index.html"},
        {"name": "web", "cmdline": "exec python3 -m http.server {{thermos.ports[health]}} --bind 127.0.0.1"},
        {"name": "goodbye", "cmdline": "echo \"finalizer ran for {{thermos.task_id}}\"", "final": True},
    ]
    task = {"name": "hello", "processes": processes, "finalization_wait": 10,
            "constraints": [{"order": ["setup", "web"]}],
            "resources": {"cpu": 0.1, "ram": 64 * 1024 * 1024, "disk": 64 * 1024 * 1024}}
    job = {"name": "hello", "role": "www-data", "environment": "prod", "cluster": "demo", "task": task,
           "health_check_config": {"initial_interval_secs": 1.0, "interval_secs": 0.5, "timeout_secs": 1.0,
                                   "max_consecutive_failures": 0, "min_consecutive_successes": 1}}
    config = TaskConfig(
        job=JobKey(role="www-data", environment="prod", name="hello"), owner=Identity(user="www-data"),
        isService=True, priority=0, maxTaskFailures=1,
        resources=frozenset({Resource(numCpus=0.1), Resource(ramMb=64), Resource(diskMb=64)}),
        constraints=frozenset(), executorConfig=ExecutorConfig(name="AuroraExecutor", data=json.dumps(job)))
    return encode_assigned_task(AssignedTask(taskId=TASK_ID, slaveId="demo-agent", slaveHost="localhost",
                                             task=config, assignedPorts={"health": port}, instanceId=0))


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except OSError:
        return 0, ""


def observed_state(url: str) -> str | None:
    code, body = http_get("%s/j/task/%s" % (url, TASK_ID))
    if code != 200:
        return None
    return (json.loads(body).get(TASK_ID) or {}).get("state")


def run_stack(root: str, bin_dir: str, linger: float) -> None:
    started = time.monotonic()
    agent = MesosAgent(os.path.join(root, "mesos"))
    observer: subprocess.Popen[bytes] | None = None
    empty = os.path.join(root, "no-fixed-root")  # so neither observer nor GC looks at /var/run/thermos
    os.makedirs(empty)
    executor_cmd, observer_cmd, gc_cmd = (command(bin_dir, n) for n in
                                          ("thermos_executor", "thermos_observer", "gc_executor"))
    try:
        agent.start()
        step(1, "agent", "stand-in Mesos agent on http://%s, work_dir %s" % (
            agent.endpoint, os.path.relpath(agent.work_dir)))

        port = free_port()
        eid = "thermos-" + TASK_ID
        run = agent.launch_executor(eid, " ".join(shlex.quote(c) for c in executor_cmd + ["--nosetuid"]))
        t0 = time.monotonic()
        agent.launch_task(eid, agent.task_info(TASK_ID, aurora_task(port), executor_id=eid,
                                               name="www-data/prod/hello"))
        where = os.path.join(os.path.relpath(run.directory), "stderr")
        wait(lambda: "TASK_RUNNING" in agent.states(TASK_ID) or agent.task_state(TASK_ID) in
             ("TASK_FAILED", "TASK_LOST"), "TASK_RUNNING", where)
        if agent.task_state(TASK_ID) != "TASK_RUNNING":
            raise DemoError("the task ended %s: %s; see %s" % (
                agent.task_state(TASK_ID), agent.task_updates(TASK_ID)[-1].message, where))
        running = agent.task_updates(TASK_ID)[-1]
        step(2, "executor", "%s ran %s: %s \"%s\" in %.1f s; see RUN/thermos_executor.log" % (
            os.path.basename(executor_cmd[-1]), TASK_ID, " -> ".join(agent.states(TASK_ID)), running.message,
            time.monotonic() - t0))
        print("          RUN=%s" % os.path.relpath(run.directory), flush=True)

        code, body = http_get("http://127.0.0.1:%d/health" % port)
        step(3, "task", "its web server answers http://127.0.0.1:%d/health with %r (HTTP %d); files in "
             "RUN/sandbox" % (port, body, code))

        oport = free_port()
        url = "http://127.0.0.1:%d" % oport
        with open(os.path.join(root, "observer.log"), "wb") as log:
            observer = subprocess.Popen(
                observer_cmd + ["--root", empty, "--mesos-root", agent.work_dir, "--ip", "127.0.0.1",
                                "--port", str(oport), "--state_dir", "", "--polling_interval_secs", "0.5",
                                "--task_process_collection_interval_secs", "1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        observer_log = os.path.join(root, "observer.log")
        wait(lambda: observed_state(url) == "ACTIVE", "task in the observer", observer_log)
        step(4, "observer", "open %s/task/%s: process table, timeline, logs (%s/ lists all tasks)" % (
            url, TASK_ID, url))
        if linger > 0:
            print("          (the observer stays up %.0f s before the kill; Ctrl-C ends the demo)" % linger,
                  flush=True)
            time.sleep(linger)

        agent.kill(TASK_ID)
        update = agent.wait_terminal(TASK_ID, TIMEOUT)
        agent.wait_exit(eid, TIMEOUT)
        goodbye = os.path.join("sandbox", ".logs", "goodbye", "0", "stdout")
        with open(os.path.join(run.directory, goodbye)) as fp:
            said = fp.read().strip()
        step(5, "kill", "%s \"%s\"; the finalizer said %r (RUN/%s)" % (
            update.state, update.message, said, goodbye))

        wait(lambda: observed_state(url) == "KILLED", "KILLED in the observer", observer_log)
        step(6, "observer", "%s/task/%s now shows KILLED with the finalizer's run on the timeline" % (
            url, TASK_ID))

        gc_run = agent.launch_executor("aurora.gc", " ".join(shlex.quote(c) for c in gc_cmd + [
            "--root", empty, "--idle-timeout", "1s"]))
        gc_task = "system-gc-demo"
        agent.launch_task("aurora.gc", agent.task_info(gc_task, encode_retained({}), executor_id="aurora.gc",
                                                       name=gc_task))
        gc_update = agent.wait_terminal(gc_task, TIMEOUT)
        agent.wait_exit("aurora.gc", TIMEOUT)
        gc_log = os.path.join(gc_run.directory, "stderr")
        left = [name for name in ("sandbox", os.path.join("checkpoints", "checkpoints", TASK_ID))
                if os.path.lexists(os.path.join(run.directory, name))]
        if left:
            raise DemoError("gc_executor (%s) left RUN/%s; see %s" % (
                gc_update.message, " and RUN/".join(left), os.path.relpath(gc_log)))
        with open(gc_log, errors="replace") as fp:
            freed = re.findall(r"freed (\S+ \S+)", fp.read())
        step(7, "gc", "gc_executor: %s \"%s\" freed %s: RUN/sandbox and the task's checkpoint are gone "
             "(log: RUN/../../../aurora.gc/runs/latest/stderr)" % (
                 gc_update.state, gc_update.message, freed[-1] if freed else "?"))
    finally:
        if observer is not None and observer.poll() is None:
            observer.send_signal(signal.SIGTERM)
            try:
                observer.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(observer.pid, signal.SIGKILL)
                observer.wait()
        agent.stop()
    print("done in %.1f s: agent, executors, task and observer stopped; files under %s" % (
        time.monotonic() - started, os.path.relpath(root)), flush=True)


def thermos(*args: str) -> int:
    print("\n$ thermos %s" % " ".join(args), flush=True)
    return subprocess.call([sys.executable, "-m", "thermos.cli.main", *args])


def run_example(root: str, example: str) -> int:
    """The runner alone: one example config under `thermos run`, then status, read and tail."""
    task_id = "demo-" + os.path.splitext(os.path.basename(example))[0]
    rc = thermos("--root", root, "run", "--sandbox", os.path.join(root, "sandbox"), "--task_id", task_id,
                 example)
    if rc != 0:
        return rc
    thermos("--root", root, "status", "-vvv")
    thermos("--root", root, "read", os.path.join(root, "checkpoints", task_id, "runner"))
    if "ordered" in example:
        thermos("--root", root, "tail", task_id, "server")
    print("\nCheckpoints, task records and logs are under %s" % root)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="./dev demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("example", nargs="?", help="a .thermos file: run it alone under the runner instead")
    p.add_argument("--bin", default=os.path.dirname(sys.executable),
                   help="where thermos_executor, thermos_observer and gc_executor (or their .pex) are "
                        "(default: this virtualenv's bin)")
    p.add_argument("--root", default=os.path.join(HERE, "demo-root"),
                   help="scratch directory (emptied first)")
    p.add_argument("--linger", type=float, default=0.0,
                   help="seconds to keep the observer up before the kill")
    args = p.parse_args(argv)
    shutil.rmtree(args.root, ignore_errors=True)
    os.makedirs(args.root)
    if args.example:
        return run_example(args.root, args.example)
    try:
        run_stack(os.path.abspath(args.root), os.path.abspath(args.bin), args.linger)
    except DemoError as e:
        print("demo: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
