"""Exit codes of thermos_runner, which the executor maps back to task outcomes (spec §10.1)."""

INTERNAL_ERROR = 101
INVALID_TASK = 102
UNKNOWN_ERROR = 103
UNKNOWN_USER = 104
TERMINAL_TASK = 105
# New in Thermos: a checkpoint append failed (disk full, read-only file system). Aurora had no such
# code because it silently carried on without recording.
CHECKPOINT_ERROR = 106
