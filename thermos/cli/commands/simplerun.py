"""Run a one-off command as a thermos task

Usage: thermos simplerun [options] [--] commandline

The command runs as a task named --name with a single process of the same name, in a fresh
temporary sandbox; it is checkpointed under --root like any other task.
"""

from __future__ import annotations

import argparse

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
    parser.add_argument("--daemon", action="store_true", default=False, help="run in the background")
    parser.add_argument("cmdline", nargs=argparse.REMAINDER, metavar="command")
    return parser


def simple_task(name: str, cmdline: str) -> object:
    from thermos.config.schema import MB, Process, Resources, Task

    return Task(name=name, processes=[Process(name=name, cmdline=cmdline)],
                resources=Resources(cpu=1.0, ram=256 * MB, disk=0))


def command_line(words: list[str]) -> str:
    if "--" in words:
        words = words[words.index("--") + 1:]
    return " ".join(words)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from thermos.cli.run_task import run_task

    cmdline = command_line(list(args.cmdline))
    if not cmdline.strip():
        raise CommandError("no command given: thermos simplerun [options] -- COMMAND...")
    print("Running command: '%s'" % cmdline)
    task = simple_task(args.name, cmdline)
    if args.bindings:
        task = task.bind(*args.bindings)
    return run_task(task, args.root, None, args.task_id, args.user, args.prebound_ports,
                    daemon=args.daemon, sandbox=tempfile.mkdtemp(prefix="thermos-simplerun-"))
