"""The `thermos` command: global options, Aurora's usage text, and dispatch to one module per command.

Commands are the modules of `thermos.cli.commands` (see its docstring for the plugin contract).
Only the module of the command being run is imported, so `thermos status` does not pay for
importing the runner and the config loader.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from thermos.cli import commands as commands_package
from thermos.cli.common import CommandError, OneLineParser
from thermos.common.constants import DEFAULT_CHECKPOINT_ROOT, DEFAULT_MESOS_ROOT

_GLOBAL_WITH_VALUE = ("--root", "--mesos-root")


def command_modules() -> list[str]:
    """Names of the command modules, sorted (the order `thermos help` lists them in)."""
    return sorted(info.name for info in pkgutil.iter_modules(commands_package.__path__)
                  if not info.name.startswith("_"))


def load_command(module_name: str) -> ModuleType:
    return importlib.import_module("%s.%s" % (commands_package.__name__, module_name))


def command_name(module: ModuleType) -> str:
    return getattr(module, "NAME", module.__name__.rsplit(".", 1)[-1])


def summary(module: ModuleType) -> str:
    doc = (module.__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def generate_usage(modules: Sequence[ModuleType]) -> str:
    """Aurora's usage text: the name, then one `    <name padded to 10>\\t<summary>` per command."""
    usage = "thermos\n\ncommands:\n"
    for module in modules:
        usage += "    " + "%-10s" % command_name(module) + "\t" + summary(module) + "\n"
    return usage


GLOBAL_HELP = """
global options (before the command):
  --root PATH        checkpoint root to search; repeat for several (default: %s)
  --mesos-root PATH  Mesos agent work_dir whose executor runs are also searched
                     (default: %s; an empty value turns this off)
""" % (DEFAULT_CHECKPOINT_ROOT, DEFAULT_MESOS_ROOT)


def build_parser(modules: Sequence[ModuleType]) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="thermos", usage=generate_usage(modules) + GLOBAL_HELP, add_help=False)
    parser.add_argument("--root", dest="roots", metavar="PATH", action="append", default=None)
    parser.add_argument("--mesos-root", dest="mesos_root", metavar="PATH", default=DEFAULT_MESOS_ROOT)
    parser.add_argument("-h", "--help", action="store_true", dest="global_help")
    subparsers = parser.add_subparsers(dest="command", metavar="command", parser_class=OneLineParser)
    for module in modules:
        module.register(subparsers)
    return parser


def _find_command(argv: Sequence[str]) -> str | None:
    """The first word of argv that is not a global option or its value."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in _GLOBAL_WITH_VALUE:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def _modules_for(command: str | None) -> list[ModuleType]:
    """Import the one module `command` needs, or every module (for help and usage)."""
    names = command_modules()
    wanted = [name for name in names if name == command]
    if command in (None, "help") or not wanted:
        return [load_command(name) for name in names]
    return [load_command(wanted[0])]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Readers log what they skip; the CLI reports problems itself, as one line each.
    logging.getLogger().addHandler(logging.NullHandler())
    modules = _modules_for(_find_command(argv))
    parser = build_parser(modules)
    args = parser.parse_args(argv)
    if args.command is None:
        stream = sys.stdout if args.global_help else sys.stderr
        stream.write(generate_usage(modules) + GLOBAL_HELP)
        return 0 if args.global_help else 1
    args.roots = args.roots or [DEFAULT_CHECKPOINT_ROOT]
    args.root = args.roots[0]
    args.parser = parser
    args.modules = modules
    module = next(m for m in modules if command_name(m) == args.command)
    try:
        return int(module.run(args) or 0)
    except CommandError as err:
        sys.stderr.write("thermos %s: error: %s\n" % (args.command, err))
        return err.code
    except KeyboardInterrupt:
        sys.stderr.write("thermos %s: interrupted\n" % args.command)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
