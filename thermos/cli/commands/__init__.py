"""One module per `thermos` subcommand.

The plugin contract
-------------------
A module ``thermos/cli/commands/<name>.py`` *is* the command ``thermos <name>``; `thermos.cli.main`
finds it by listing this package, so adding a command means adding a module, nothing else.

The module provides:

``__doc__``
    Its first line is the one-line summary shown by ``thermos help`` (Aurora's usage format);
    the whole docstring is what ``thermos help <name>`` prints above the options.

``register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser``
    Add the command's parser with ``thermos.cli.common.add_command_parser(subparsers, NAME,
    __doc__)`` (it gives every command the same one-line error handling) and its options.

``run(args: argparse.Namespace) -> int``
    Do the work and return the exit status. ``args`` also carries the global options:
    ``args.roots`` (checkpoint roots, in order; ``args.root`` is the first one) and
    ``args.mesos_root`` ('' when Mesos roots are not searched). ``get_path_detector(args)``
    in `thermos.cli.common` turns them into the detector every reading command uses.

Optionally ``NAME: str`` when the command name differs from the module name.

Conventions every command follows:

* Bad input raises ``thermos.cli.common.CommandError("one line: what, where, how to fix")``
  (optionally with ``code=``); `main` prints it as ``thermos <name>: error: ...`` on stderr and
  exits with the code (1 by default). Never let a traceback reach the user.
* Only the command being run is imported, but ``thermos help`` imports them all: keep module
  level imports light and import heavy modules (the runner, the config loader) inside ``run``.
"""
