"""Garbage collection of finished tasks; mapped to thermos.gc."""
