"""Run a thermos task

Usage: thermos run [options] config

Runs the task in the foreground until it finishes (or is killed with Ctrl-C), checkpointing it
under --root so that `thermos status`, `read`, `tail` and `kill` see it; --daemon detaches.

Exit status: 0 SUCCESS, 1 FAILED, 3 KILLED, 4 LOST (the task's final state; 0 once --daemon has
detached); 2 bad usage, 101 unbound ports or internal error, 102 invalid config, 104 unknown user,
105 the task id already finished (nothing was run), 106 a checkpoint write failed.
"""

from __future__ import annotations

import argparse

from thermos.cli.common import CommandError, add_command_parser, get_task_from_options
from thermos.common import statuses
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
    parser.add_argument("--json", action="store_true",
                        help="the config is task JSON (as 'thermos inspect --task-json' prints it), "
                             "not a .thermos file")
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

    if len(args.config) != 1:
        raise CommandError("Should specify precisely one config, instead got: %s (thermos run [options] "
                           "CONFIG)" % args.config, code=2)
    try:
        wrapper = get_task_from_options(args.config, args)
    except CommandError as err:  # the config cannot be run: thermos_runner's "invalid task"
        raise CommandError(str(err), code=statuses.INVALID_TASK) from None
    return run_task(wrapper.task, args.root, args.sandbox, args.task_id, args.user, args.prebound_ports,
                    chroot=args.enable_chroot, daemon=args.daemon, source=args.config[0])
