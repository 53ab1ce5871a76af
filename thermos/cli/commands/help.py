"""Get help about a specific command.

Usage: thermos help [command]
"""

from __future__ import annotations

import argparse
import sys

from thermos.cli.common import add_command_parser

NAME = "help"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, NAME, __doc__)
    parser.add_argument("topic", nargs="?", metavar="command")
    return parser


def run(args: argparse.Namespace) -> int:
    from thermos.cli.main import GLOBAL_HELP, command_name, generate_usage

    if args.topic is None:
        sys.stdout.write(generate_usage(args.modules) + GLOBAL_HELP)
        return 0
    for module in args.modules:
        if command_name(module) == args.topic:
            print("command %s:" % args.topic)  # Aurora's form: the name, then the docstring
            print((module.__doc__ or "").strip())
            print()
            subparsers = next(a for a in args.parser._actions if isinstance(a, argparse._SubParsersAction))
            print(_usage_and_options(subparsers.choices[args.topic]))
            return 0
    print("unknown command: %s (the commands are: %s)" % (
        args.topic, ", ".join(command_name(m) for m in args.modules)), file=sys.stderr)
    return 1


def _usage_and_options(parser: argparse.ArgumentParser) -> str:
    """The parser's help without its description: that is the docstring, printed once above."""
    description, parser.description = parser.description, None
    try:
        return parser.format_help().rstrip()
    finally:
        parser.description = description
