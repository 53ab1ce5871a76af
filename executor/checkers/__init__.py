"""Status checkers: the executor's independent opinions about a running task (kill, health,
resources, announcer), combined by `base.ChainedStatusChecker`."""
