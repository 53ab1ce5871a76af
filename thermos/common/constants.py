"""Defaults shared by the runner, the CLI and the readers."""

DEFAULT_CHECKPOINT_ROOT = "/var/run/thermos"
DEFAULT_MESOS_ROOT = "/var/lib/mesos"
DEFAULT_SANDBOX_ROOT = "/var/lib/thermos/sandbox"
