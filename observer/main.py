"""thermos_observer: serve every task on this host over HTTP (pages, JSON, logs, files, metrics).

Flags are Aurora's (docs/reference/observer-configuration.md), plus `--root` (plain checkpoint
roots, repeatable), `--state_dir` (the summary cache) and `--threads`. The server is waitress;
SIGTERM or SIGINT stops it cleanly (exit 0) after writing the cache. The observer has no
authentication: bind it (`--ip`) where the cluster's network policy decides who may reach it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType
from typing import NoReturn

from thermos.common.constants import DEFAULT_CHECKPOINT_ROOT, DEFAULT_MESOS_ROOT
from thermos.monitoring.detector import (
    ChainedPathDetector,
    FixedPathDetector,
    MesosPathDetector,
    PathDetector,
)
from thermos.monitoring.disk import DiskCollectorSettings
from thermos.monitoring.resource import DiskCollectorProvider

from .http.safe_paths import is_within

log = logging.getLogger("thermos_observer")

DEFAULT_STATE_DIR = "/var/lib/thermos/observer"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, "%s: error: %s (see '%s --help')\n" % (self.prog, message, self.prog))


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number of seconds" % value) from None
    if number <= 0:
        raise argparse.ArgumentTypeError("%r must be more than 0 seconds" % value)
    return number


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a port number" % value) from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError("%r is not between 0 and 65535" % value)
    return number


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="thermos_observer", description=__doc__.strip().splitlines()[0])
    p.add_argument("--root", dest="roots", action="append", metavar="PATH",
                   help="a checkpoint root to observe (repeatable; default %s)" % DEFAULT_CHECKPOINT_ROOT)
    p.add_argument("--mesos-root", "--mesos_root", dest="mesos_root", default=DEFAULT_MESOS_ROOT,
                   metavar="PATH",
                   help="Mesos agent work_dir whose executor runs to observe ('' turns it off)")
    p.add_argument("--ip", default="0.0.0.0", help="address to listen on (default 0.0.0.0; unauthenticated!)")
    p.add_argument("--port", type=_port, default=1338, help="port to listen on (default 1338)")
    p.add_argument("--polling_interval_secs", type=_positive, default=5.0,
                   help="seconds between refreshes of the task list and checkpoints (default 5)")
    p.add_argument("--disable_task_resource_collection", action="store_true",
                   help="do not sample CPU, memory or disk of tasks")
    p.add_argument("--task_process_collection_interval_secs", type=_positive, default=20.0,
                   help="seconds between samples of tasks' process trees (default 20)")
    p.add_argument("--task_disk_collection_interval_secs", type=_positive, default=60.0,
                   help="seconds between measurements of sandbox disk usage (default 60)")
    p.add_argument("--enable_mesos_disk_collector", action="store_true",
                   help="take disk usage from the agent's /containers API instead of walking sandboxes")
    p.add_argument("--agent_api_url", default="http://localhost:5051/containers",
                   help="the agent's containers endpoint (with --enable_mesos_disk_collector)")
    p.add_argument("--executor_id_json_path", default="executor_id",
                   help="JSON path of the executor id in a /containers entry")
    p.add_argument("--disk_usage_json_path", default="statistics.disk_used_bytes",
                   help="JSON path of the disk usage in a /containers entry")
    p.add_argument("--state_dir", default=DEFAULT_STATE_DIR,
                   help="the observer's own directory for its summary cache ('' for none; "
                        "default %s); never inside a checkpoint root" % DEFAULT_STATE_DIR)
    p.add_argument("--threads", type=int, default=4, help="HTTP worker threads (default 4)")
    p.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def path_detector(args: argparse.Namespace) -> PathDetector:
    detectors: list[PathDetector] = [FixedPathDetector(root) for root in args.roots]
    if args.mesos_root:
        detectors.append(MesosPathDetector(args.mesos_root))
    return ChainedPathDetector(*detectors)


def check_state_dir(args: argparse.Namespace) -> str | None:
    """The one-line problem with --state_dir, or None: it must not lie inside a root it reads."""
    if not args.state_dir:
        return None
    state_dir = os.path.realpath(args.state_dir)
    for root in [*args.roots, *([args.mesos_root] if args.mesos_root else [])]:
        if is_within(os.path.realpath(root), state_dir):
            return ("--state_dir %s is inside the observed root %s (the observer only reads there; "
                    "give a directory of its own, e.g. %s)" % (args.state_dir, root, DEFAULT_STATE_DIR))
    return None


def disk_collector_provider(args: argparse.Namespace) -> DiskCollectorProvider | None:
    """Disk usage from the agent's /containers API (--enable_mesos_disk_collector), or None for
    the default incremental sandbox walks. Raises ValueError for a malformed JSON path."""
    if not args.enable_mesos_disk_collector:
        return None
    settings = DiskCollectorSettings(
        http_api_url=args.agent_api_url, executor_id_json_path=args.executor_id_json_path,
        disk_usage_json_path=args.disk_usage_json_path,
        disk_collection_interval=args.task_disk_collection_interval_secs)
    return DiskCollectorProvider(enable_mesos_disk_collector=True, settings=settings)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.roots = args.roots or [DEFAULT_CHECKPOINT_ROOT]
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    problem = check_state_dir(args)
    if problem:
        print("thermos_observer: error: %s" % problem, file=sys.stderr)
        return 2
    if args.threads < 1:
        print("thermos_observer: error: --threads must be at least 1", file=sys.stderr)
        return 2

    from waitress.server import create_server

    from .http.app import create_app
    from .task_observer import TaskObserver

    try:
        provider = disk_collector_provider(args)
    except ValueError as err:
        print("thermos_observer: error: %s" % err, file=sys.stderr)
        return 2
    observer = TaskObserver(
        path_detector(args), state_dir=args.state_dir or None,
        polling_interval=args.polling_interval_secs,
        resource_collection=not args.disable_task_resource_collection,
        process_interval=args.task_process_collection_interval_secs,
        disk_interval=args.task_disk_collection_interval_secs, disk_collector_provider=provider)
    app = create_app(observer, argv=sys.argv if argv is None else ["thermos_observer", *argv])
    try:
        server = create_server(app, host=args.ip, port=args.port, threads=args.threads,
                               ident="thermos_observer", clear_untrusted_proxy_headers=True)
    except OSError as err:
        print("thermos_observer: error: cannot listen on %s:%d: %s (pick another --port or --ip)" % (
            args.ip, args.port, err.strerror or err), file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        observer.start()
        host, port = server.effective_host, server.effective_port  # type: ignore[union-attr]
        log.info("Observing %s; serving http://%s:%s/ (unauthenticated)", ", ".join(
            observer.roots_description()), host, port)
        server.run()
    except SystemExit:
        pass
    finally:
        server.close()
        observer.stop()
        log.info("Stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
