"""Run a one-off command as a thermos task

Usage: thermos simplerun [options] [--] commandline

The command runs as a task named --name with a single process of the same name, checkpointed
under --root like any other task, in the sandbox <--sandbox>/<task_id> (by default
ROOT/sandbox/<task_id>, beside the checkpoints). The exit status is `thermos run`'s.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

from thermos.cli.common import CommandError, add_command_parser

NAME = "simplerun"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from thermos.common.options import add_binding_to, add_port_to

    parser = add_command_parser(subparsers, NAME, __doc__)
    parser.add_argument("--user", default=None, help="run the process as this user (default: you)")
    parser.add_argument("--name", default="simple", help="the name of the task and its process")
    parser.add_argument("--task_id", default=None, help="the task id (default: <name>-<time>)")
    parser.add_argument("-P", "--port", metavar="NAME:PORT", action=add_port_to("prebound_ports"),
                        dest="prebound_ports", default={}, help="bind named PORT to NAME")
    parser.add_argument("-E", "--environment", metavar="NAME=VALUE", action=add_binding_to("bindings"),
                        dest="bindings", default=[], help="bind the config variable NAME to VALUE")
    parser.add_argument("--sandbox", default=None,
                        help="directory under which the sandbox <sandbox>/<task_id> is made "
                             "(default: ROOT/sandbox, ROOT being the first --root)")
    parser.add_argument("--daemon", action="store_true", default=False, help="run in the background")
    parser.add_argument("cmdline", nargs=argparse.REMAINDER, metavar="command")
    return parser


def simple_task(name: str, cmdline: str) -> object:
    from thermos.config.schema import MB, Process, Resources, Task

    return Task(name=name, processes=[Process(name=name, cmdline=cmdline)],
                resources=Resources(cpu=1.0, ram=256 * MB, disk=0))


def command_line(words: Sequence[str]) -> str:
    words = list(words)
    if "--" in words:
        words = words[words.index("--") + 1:]
    return " ".join(words)


def _bindings(bindings: Any) -> list[Any]:
    """`-E` bindings as a list for `Task.bind`: a list of them, or one mapping (or nothing)."""
    if not bindings:
        return []
    return [bindings] if isinstance(bindings, Mapping) else list(bindings)


def really_run(task: Any, root: str, sandbox: str, task_id: str | None = None, user: str | None = None,
               prebound_ports: Mapping[str, int] | None = None, chroot: bool | None = None,
               daemon: bool = False) -> int:
    """Aurora's `really_run`: run `task` (a ThermosTaskWrapper or a Task) under the checkpoint
    `root` in `sandbox`, in the foreground (or daemonized), and return the exit status.

    Errors (unbound ports, an unknown user, an invalid task) raise `CommandError` with a
    one-line message; Aurora's version exited the process instead.
    """
    from thermos.cli.run_task import run_task

    task = getattr(task, "task", task)
    return run_task(task, root, None, task_id, user, dict(prebound_ports or {}), chroot=bool(chroot),
                    daemon=daemon, sandbox=sandbox)


def simplerun(args: Sequence[str], options: Any) -> int:
    """Aurora's function form: run `args` (after a `--`, if any) as a one-process task.

    `options` carries Aurora's fields: root, user, name, task_id, prebound_ports, bindings,
    daemon, and Thermos's sandbox (any that is missing takes the command line's default). Prints
    "Running command: '<cmd>'"; the task and its process are named `options.name`, with cpu 1.0,
    ram 256 MiB, disk 0, no chroot. The sandbox is `<sandbox or ROOT/sandbox>/<task_id>`:
    Aurora made a fresh `tempfile.mkdtemp()` that nothing ever removed and that `--root` did not
    govern; under the root it is found, and collected by `thermos gc`, with the task.
    """
    from thermos.cli.run_task import default_task_id
    from thermos.config.loader import ThermosTaskWrapper

    cmdline = command_line(args)
    if not cmdline.strip():
        raise CommandError("no command given: thermos simplerun [options] -- COMMAND...")
    from thermos.common.constants import DEFAULT_CHECKPOINT_ROOT

    def option(name: str, default: Any = None) -> Any:
        return getattr(options, name, default)

    print("Running command: '%s'" % cmdline)
    name = option("name") or "simple"
    bindings = _bindings(option("bindings"))
    task = ThermosTaskWrapper(simple_task(name, cmdline), bindings=bindings, strict=False)
    root = option("root") or DEFAULT_CHECKPOINT_ROOT
    task_id = option("task_id") or default_task_id(name)
    sandbox = os.path.join(option("sandbox") or os.path.join(root, "sandbox"), task_id)
    return really_run(task, root, sandbox, task_id=task_id, user=option("user"),
                      prebound_ports=option("prebound_ports"), chroot=False, daemon=bool(option("daemon")))


def run(args: argparse.Namespace) -> int:
    return simplerun(args.cmdline, args)
