"""What the `thermos` commands share: one-line errors, root detection, task matching, formatting."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from thermos.monitoring.detector import (
    ChainedPathDetector,
    FixedPathDetector,
    MesosPathDetector,
    PathDetector,
    TaskDetector,
)


class CommandError(Exception):
    """Bad input or a failed action: `main` prints the message as one line and exits with `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (with a pointer to the help), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, "%s: error: %s (see '%s --help')\n" % (self.prog, message, self.prog))


def add_command_parser(subparsers: Any, name: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of one command, with its summary and docstring as help (the plugin contract)."""
    doc = doc or ""
    summary = doc.strip().splitlines()[0] if doc.strip() else name
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, prog="thermos %s" % name, help=summary, description=doc.strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # The global options are accepted after the command too (`thermos status --root /x`).
    parser.add_argument("--root", dest="roots", metavar="PATH", action="append", default=argparse.SUPPRESS,
                        help="checkpoint root to search (repeatable)")
    parser.add_argument("--mesos-root", dest="mesos_root", metavar="PATH", default=argparse.SUPPRESS,
                        help="Mesos agent work_dir to search ('' turns it off)")
    return parser


def get_path_detector(args: argparse.Namespace) -> PathDetector:
    """Every checkpoint root the global options name: each --root, then Mesos executor runs."""
    detectors: list[PathDetector] = [FixedPathDetector(root) for root in args.roots]
    if getattr(args, "mesos_root", ""):
        detectors.append(MesosPathDetector(args.mesos_root))
    return ChainedPathDetector(*detectors)


def compile_patterns(expressions: Iterable[str]) -> list[re.Pattern[str]]:
    patterns = []
    for expression in expressions:
        try:
            patterns.append(re.compile(expression))
        except re.error as err:
            raise CommandError("bad task regex %r: %s (use a Python regular expression, e.g. 'hello.*')" % (
                expression, err)) from None
    return patterns


def tasks_from_re(expressions: Sequence[str], detector: PathDetector,
                  state: str | None = None) -> list[tuple[str, str]]:
    """`(root, task_id)` of the tasks whose id `re.match`es any expression, in root order."""
    patterns = compile_patterns(expressions)
    matched: list[tuple[str, str]] = []
    for root in detector.get_paths():
        for _, task_id in TaskDetector(root).get_task_ids(state=state):
            if any(pattern.match(task_id) for pattern in patterns) and (root, task_id) not in matched:
                matched.append((root, task_id))
    return matched


def roots_text(detector: PathDetector) -> str:
    roots = detector.get_paths()
    return ", ".join(roots) if roots else "(no checkpoint roots found)"


def asctime(seconds: float) -> str:
    return time.asctime(time.localtime(seconds))


def thrift_to_json(obj: Any, enums: dict[str, Any] | None = None) -> Any:
    """Plain JSON-able data for a Thrift struct; fields named in `enums` become their names."""
    if isinstance(obj, list | tuple):
        return [thrift_to_json(item, enums) for item in obj]
    if isinstance(obj, dict):
        return {key: thrift_to_json(value, enums) for key, value in obj.items()}
    spec = getattr(obj, "thrift_spec", None)
    if spec is None:
        return obj
    result = {}
    for field in spec:
        if not field:
            continue
        name = field[2]
        value = getattr(obj, name, None)
        if value is None:
            continue
        if enums and name in enums:
            value = enums[name]._VALUES_TO_NAMES.get(value, value)
        result[name] = thrift_to_json(value, enums)
    return result


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def get_task_from_options(args: Sequence[str], opts: argparse.Namespace, **kw: Any) -> Any:
    """The one task a config file names (for `inspect` and `run`): a ThermosTaskWrapper.

    `opts.json` reads task JSON instead of a .thermos file, `opts.task` picks a task by name and
    `opts.bindings` are `-E` bindings. Every problem is a one-line CommandError.
    """
    from thermos.config.loader import ThermosConfigLoader, describe_config_error

    if len(args) != 1:
        raise CommandError("Should specify precisely one config, instead got: %s" % list(args))
    if os.path.isdir(args[0]):
        raise CommandError("%s is a directory, not a config (give a .thermos file, or task JSON with "
                           "--json)" % args[0])
    bindings = getattr(opts, "bindings", None) or []
    try:
        if getattr(opts, "json", False):
            loader = ThermosConfigLoader.load_json(args[0], bindings=bindings, **kw)
            if getattr(loader, "load_error", None) is not None:
                raise CommandError(str(loader.load_error))
        else:
            loader = ThermosConfigLoader.load(args[0], bindings=bindings, **kw)
        task_list = list(loader.tasks())
    except CommandError:
        raise
    except Exception as err:  # noqa: BLE001 - the loader's errors are described as one line
        raise CommandError(describe_config_error(err, source=args[0])) from None
    if not task_list:
        raise CommandError("No tasks specified! (%s exports none: a .thermos file names its tasks with "
                           "export(Task(...)))" % args[0])
    name = getattr(opts, "task", None)
    if name is None:
        if len(task_list) > 1:
            raise CommandError("Multiple tasks in config but no task name specified!")
        return task_list[0]
    for task in task_list:
        if task.task.name().get() == name:
            return task
    raise CommandError("Could not find task %s!" % name)
