"""Run a thermos task

Usage: thermos run [options] config

Runs the task in the foreground until it finishes (or is killed with Ctrl-C), checkpointing it
under --root so that `thermos status`, `read`, `tail` and `kill` see it; --daemon detaches.
"""

from __future__ import annotations

import argparse

from thermos.cli.common import add_command_parser, get_task_from_options
from thermos.common.constants import DEFAULT_SANDBOX_ROOT

NAME = "run"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from thermos.common.options import add_binding_to, add_port_to

    parser = add_command_parser(subparsers, NAME, __doc__)
    parser.add_argument("--user", default=None, help="run the processes as this user (default: you)")
    parser.add_argument("--enable_chroot", action="store_true", default=False,
                        help="chroot the processes into the sandbox")
    parser.add_argument("--task", metavar="TASKNAME", default=None,
                        help="the task to run, if the config exports several")
    parser.add_argument("--task_id", default=None, help="the task id (default: <name>-<time>)")
    parser.add_argument("--json", action="store_true", help="the config is task JSON, not a .thermos file")
    parser.add_argument("--sandbox", default=DEFAULT_SANDBOX_ROOT,
                        help="directory under which the task's sandbox <sandbox>/<task_id> is made")
    parser.add_argument("-P", "--port", metavar="NAME:PORT", action=add_port_to("prebound_ports"),
                        dest="prebound_ports", default={}, help="bind named PORT to NAME")
    parser.add_argument("-E", "--environment", metavar="NAME=VALUE", action=add_binding_to("bindings"),
                        dest="bindings", default=[], help="bind the config variable NAME to VALUE")
    parser.add_argument("--daemon", action="store_true", default=False, help="run in the background")
    parser.add_argument("config", nargs="*")
    return parser


def run(args: argparse.Namespace) -> int:
    from thermos.cli.run_task import run_task

    wrapper = get_task_from_options(args.config, args)
    return run_task(wrapper.task, args.root, args.sandbox, args.task_id, args.user, args.prebound_ports,
                    chroot=args.enable_chroot, daemon=args.daemon)
