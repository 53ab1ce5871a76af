"""Inspect a thermos config and display the evaluated task

Usage: thermos inspect [options] config

Loads a .thermos file (or task JSON with --json), applies -E bindings and -P ports, and
pretty-prints the interpolated task as plain data. With --task-json it prints the task as task
JSON instead: the input of `thermos_runner --thermos_json` and `thermos run --json`, with the
{{thermos.*}} variables left for the runner to fill in.
"""

from __future__ import annotations

import argparse
import json
import pprint
import sys
from typing import Any

from thermos.cli.common import CommandError, add_command_parser, get_task_from_options

NAME = "inspect"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from thermos.common.options import add_binding_to, add_port_to

    parser = add_command_parser(subparsers, NAME, __doc__)
    parser.add_argument("--task", metavar="TASKNAME", default=None,
                        help="The thermos task within the config that should be inspected. Only required "
                             "if there are multiple tasks exported from the thermos configuration.")
    parser.add_argument("--json", action="store_true",
                        help="Read the source file in json format instead of pystachio.")
    parser.add_argument("-P", "--port", metavar="NAME:PORT", action=add_port_to("prebound_ports"),
                        dest="prebound_ports", default={}, help="bind named PORT to NAME.")
    parser.add_argument("-E", "--environment", metavar="NAME=VALUE", action=add_binding_to("bindings"),
                        dest="bindings", default=[],
                        help="bind the configuration environment variable NAME to VALUE.")
    parser.add_argument("--task-json", dest="task_json", action="store_true",
                        help="print task JSON (for thermos_runner --thermos_json), checked as the runner "
                             "would check it")
    parser.add_argument("config", nargs="*")
    return parser


def inspect_unwrap(obj: Any) -> Any:
    """Plain dicts and tuples, as Aurora printed them (pystachio hands out frozendicts)."""
    if isinstance(obj, dict) or (hasattr(obj, "items") and not isinstance(obj, str | bytes)):
        return {key: inspect_unwrap(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return tuple(inspect_unwrap(value) for value in obj)
    return obj


def run(args: argparse.Namespace) -> int:
    from thermos.config.loader import ThermosTaskValidator, describe_config_error
    from thermos.config.schema import ThermosContext

    wrapper = get_task_from_options(args.config, args)
    task = wrapper.task
    if args.prebound_ports:  # Aurora accepted -P here but ignored it; show the ports bound
        task = task.bind(thermos=ThermosContext(ports=args.prebound_ports))
    source = args.config[0]
    # Aurora printed any task, even one no runner can run. The structure is checked (a task
    # without processes, bad names, an impossible order); unbound {{variables}} are shown as they
    # are, unless the output is task JSON meant for a runner.
    checks = [ThermosTaskValidator.assert_valid_task] if args.task_json else [
        ThermosTaskValidator.assert_has_processes, ThermosTaskValidator.assert_valid_names,
        ThermosTaskValidator.assert_valid_plan]
    try:
        for check in checks:
            check(task, source=source)
        interpolated, _ = task.interpolate()
    except Exception as err:  # noqa: BLE001 - ConfigError, and the many types pystachio raises
        raise CommandError(describe_config_error(err, source=source)) from None
    if args.task_json:
        json.dump(interpolated.get(), sys.stdout)
        sys.stdout.write("\n")
    else:
        pprint.pprint(inspect_unwrap(interpolated.get()), indent=4)
    return 0
