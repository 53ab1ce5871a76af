"""thermos_executor: the command a Mesos agent starts for each Aurora task (flags of spec §2).

Flags keep Aurora's spellings, hyphens and underscores as they were (`--announcer-ensemble`,
`--stop_timeout_in_secs`); `--flag=value` and `--flag value` both work. A flag it does not know is
rejected with one line and exit status 2. The executor's log goes to `<MESOS_SANDBOX>/thermos_executor.log`
(or `--log_dir`) and to stderr, one line per event.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

log = logging.getLogger("thermos.executor")

PROG = "thermos_executor"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write("%s: error: %s (see %s --help)\n" % (PROG, message, PROG))
        sys.exit(2)


def positive_seconds(text: str) -> float:
    """A flag value of seconds above zero (argparse reports the ValueError as one line)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a number of seconds above 0, not %r" % text)
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, allow_abbrev=False,
                description="Run one Aurora task under thermos_runner for a Mesos agent.")
    a = p.add_argument
    a("--announcer-ensemble", dest="announcer_ensemble", default=None, metavar="HOST:PORT,...",
      help="ZooKeeper ensemble; enables announcing tasks that have an `announce` section")
    a("--announcer-serverset-path", dest="announcer_serverset_path", default="/aurora",
      help="root of the serversets: ROOT/ROLE/ENV/JOB (default /aurora)")
    a("--announcer-allow-custom-serverset-path", dest="announcer_allow_custom_serverset_path",
      action="store_true", default=False, help="honour a task's announce.zk_path")
    a("--announcer-hostname", dest="announcer_hostname", default=None,
      help="host name to announce (default: the agent's)")
    a("--announcer-zookeeper-auth-config", dest="announcer_zookeeper_auth_config", default=None,
      metavar="FILE", help="JSON file with ZooKeeper auth credentials and ACLs")
    a("--mesos-containerizer-path", dest="mesos_containerizer_path",
      default="/usr/libexec/mesos/mesos-containerizer", help="isolation binary for filesystem-image tasks")
    a("--no-create-user", dest="no_create_user", action="store_true", default=False,
      help="do not create the role's user inside a filesystem image")
    a("--sandbox-mount-point", dest="sandbox_mount_point", default="/mnt/mesos/sandbox",
      help="where the sandbox is mounted inside a filesystem image")
    a("--execute-as-user", dest="execute_as_user", default=None, metavar="USER",
      help="run the task as the executor's user (no setuid); the sandbox is owned by USER")
    a("--nosetuid", dest="nosetuid", action="store_true", default=False,
      help="do not switch the task to its role's user; do not chown the sandbox")
    a("--nosetuid-health-checks", dest="nosetuid_health_checks", action="store_true", default=False,
      help="run shell health checks as the executor's user")
    a("--runner-logger-destination", dest="runner_logger_destination", default=None,
      choices=["file", "console", "both", "none"], help="thermos_runner --process_logger_destination")
    a("--runner-logger-mode", dest="runner_logger_mode", default=None, choices=["standard", "rotate"],
      help="thermos_runner --process_logger_mode")
    a("--runner-rotate-log-size-mb", dest="runner_rotate_log_size_mb", type=int, default=None)
    a("--runner-rotate-log-backups", dest="runner_rotate_log_backups", type=int, default=None)
    a("--preserve_env", action="store_true", default=False,
      help="processes inherit the executor's environment")
    a("--stop_timeout_in_secs", type=float, default=120.0,
      help="bound on stopping the checkers and the task (default 120)")
    a("--checkpoint_root", default=None,
      help="where the runner checkpoints (default <MESOS_SANDBOX>/checkpoints)")
    a("--enable-memory-limit", dest="enable_memory_limit", action="store_true", default=False,
      help="stop a task whose processes' RSS exceeds its ram reservation (Mesos' cgroups usually do)")
    a("--disk-collection-interval-secs", dest="disk_collection_interval_secs", type=positive_seconds,
      default=60.0, help="how often the sandbox's disk use is measured (default 60, as Aurora)")
    a("--process-collection-interval-secs", dest="process_collection_interval_secs", type=positive_seconds,
      default=20.0, help="how often the task's processes are sampled (default 20, as Aurora)")
    a("--log_dir", default=None, help="directory of the executor's log (default $MESOS_SANDBOX)")
    a("--verbose", "-v", action="store_true", default=False, help="debug logging")
    return p


def setup_logging(log_dir: str, verbose: bool) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    try:
        os.makedirs(log_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(log_dir, "thermos_executor.log")))
    except OSError as e:
        sys.stderr.write("%s: cannot write a log under %s: %s; logging to stderr only\n" % (
            PROG, log_dir, e.strerror))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s")


def build_providers(args: argparse.Namespace, checkpoint_root: str) -> list[Any]:
    """Status-checker providers in Aurora's order: health, resources, announcer (with an ensemble).
    AnnouncerConfigError (a ValueError) for a bad --announcer-zookeeper-auth-config file."""
    # Neither imports its checking code until a task needs it (see their modules).
    from thermos.executor.checkers.health_provider import HealthCheckerProvider
    from thermos.executor.checkers.resources import ResourceManagerProvider

    providers: list[Any] = [
        HealthCheckerProvider(nosetuid_health_checks=args.nosetuid_health_checks,
                              preserve_env=args.preserve_env),
        ResourceManagerProvider(checkpoint_root, enforce_memory=args.enable_memory_limit,
                                process_collection_interval=args.process_collection_interval_secs,
                                disk_collection_interval=args.disk_collection_interval_secs),
    ]
    if args.announcer_ensemble:
        from thermos.executor.checkers.announcer import AnnouncerProvider, load_zk_auth

        auth = load_zk_auth(args.announcer_zookeeper_auth_config) if args.announcer_zookeeper_auth_config \
            else None
        providers.append(AnnouncerProvider(
            args.announcer_ensemble, root=args.announcer_serverset_path,
            allow_custom_serverset_path=args.announcer_allow_custom_serverset_path,
            hostname=args.announcer_hostname, zk_auth=auth))
    return providers


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from thermos.executor.driver import MesosEnvironment

    try:
        env = MesosEnvironment.from_env()
    except MesosEnvironment.Error as e:
        sys.stderr.write("%s: error: %s\n" % (PROG, e))
        return 2
    setup_logging(args.log_dir or env.sandbox, args.verbose)

    from thermos.executor.aurora_executor import AuroraExecutor, ExecutorOptions
    from thermos.executor.driver import PyMesosDriver

    checkpoint_root = args.checkpoint_root or os.path.join(os.path.abspath(env.sandbox), "checkpoints")
    options = ExecutorOptions(
        checkpoint_root=checkpoint_root, execute_as_user=args.execute_as_user, nosetuid=args.nosetuid,
        mesos_containerizer_path=args.mesos_containerizer_path, sandbox_mount_point=args.sandbox_mount_point,
        no_create_user=args.no_create_user, runner_logger_destination=args.runner_logger_destination,
        runner_logger_mode=args.runner_logger_mode, runner_rotate_log_size_mb=args.runner_rotate_log_size_mb,
        runner_rotate_log_backups=args.runner_rotate_log_backups, preserve_env=args.preserve_env,
        stop_timeout_in_secs=args.stop_timeout_in_secs)
    try:
        providers = build_providers(args, checkpoint_root)
    except ValueError as e:  # a bad flag value found while building a checker (e.g. the auth file)
        log.error("%s", e)
        sys.stderr.flush()
        return 2
    executor = AuroraExecutor(env, options, providers)
    driver = PyMesosDriver(executor, env)

    def on_term(signum: int, frame: object) -> None:
        log.info("Signal %d: shutting down", signum)
        executor.shutdown(driver)

    signal.signal(signal.SIGTERM, on_term)
    log.info("thermos_executor starting (agent %s, executor %s)", env.agent_endpoint, env.executor_id)
    driver.start()
    driver.join()
    # The driver may stop before the task is down (recovery timeout): wait for the kill to finish.
    if not executor.finished.wait(options.stop_timeout_in_secs + 10):
        log.error("Task did not finish stopping; exiting anyway")
    log.info("thermos_executor exiting: %s", driver.stop_reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
