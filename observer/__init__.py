"""The per-host HTTP observer; mapped to thermos.observer."""
