"""Exponential restart backoff with jitter and reset: an opt-in throttle on top of ``min_duration``.

Aurora's only restart throttle is a constant ``min_duration`` (5 s by default), so a crash-looping
process restarts every few seconds until it hits ``max_failures`` or the run cap, flooding the
checkpoint and the observer.  Peers back off exponentially instead: kubelet doubles 10 s up to
5 min and forgets after 10 min of clean running, Nomad adds up to 25 % jitter, systemd has
``RestartSteps``/``RestartMaxDelaySec``.  ``Process.backoff`` brings the same to Thermos.

This module is pure arithmetic over times passed in by the caller: it never reads a clock or
sleeps, and its randomness comes from an injected ``random`` callable, so every delay can be
reproduced in a test.  The planner decides *when* a process may run again; this only says how long
the next delay is.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pystachio import Empty

__all__ = ('Backoff', 'BackoffPolicy')


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """The parameters of one process's backoff, validated once so the arithmetic cannot fail later.

    The delay before the restart that follows the n-th consecutive bad exit is
    ``min(initial * multiplier ** (n - 1), maximum)``, then scaled by a uniform factor in
    ``[1 - jitter, 1 + jitter]``.  Jitter is applied *after* the cap on purpose: processes that
    crash-loop together would otherwise all settle on exactly ``maximum`` and restart in lockstep.
    So the largest possible delay is ``maximum * (1 + jitter)``.

    A run that lasted at least ``reset_after`` seconds proves the process healthy again and starts
    the count over; ``reset_after=0`` therefore gives a fixed ``initial`` delay after every exit.
    """

    initial: float = 1.0
    maximum: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.25
    reset_after: float = 600.0

    def __post_init__(self) -> None:
        for name in ('initial', 'maximum', 'multiplier', 'jitter', 'reset_after'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f'backoff {name} must be a finite number, got {value!r}')
            if value < 0:
                raise ValueError(f'backoff {name} must not be negative, got {value!r}')
        if self.maximum < self.initial:
            raise ValueError(
                f'backoff maximum ({self.maximum}) must be at least initial ({self.initial})')
        if self.multiplier < 1:
            raise ValueError(
                f'backoff multiplier must be at least 1 (a shrinking delay is not a backoff), '
                f'got {self.multiplier}')
        if self.jitter > 1:
            raise ValueError(f'backoff jitter is a fraction of the delay in [0, 1], got {self.jitter}')

    @classmethod
    def from_config(cls, config: Any) -> BackoffPolicy | None:
        """Build from a pystachio ``RestartBackoff`` struct; ``None`` when the field is unset.

        Returning ``None`` (not a zero-delay policy) for ``Empty`` lets callers take Aurora's exact
        code path, so tasks that do not opt in behave bit for bit as before.
        """
        if config is None or config is Empty:
            return None
        return cls(
            initial=float(config.initial().get()),
            maximum=float(config.maximum().get()),
            multiplier=float(config.multiplier().get()),
            jitter=float(config.jitter().get()),
            reset_after=float(config.reset_after().get()),
        )

    def base_delay(self, attempt: int) -> float:
        """The un-jittered delay after ``attempt`` consecutive bad exits (0 before the first)."""
        if attempt <= 0:
            return 0.0
        try:
            delay = self.initial * self.multiplier ** (attempt - 1)
        except OverflowError:  # the exponent outgrew a float long after the cap was reached
            return self.maximum
        return min(delay, self.maximum)

    def jittered(self, delay: float, draw: float) -> float:
        """Scale ``delay`` by ``1 + jitter * (2 * draw - 1)``; ``draw`` is clamped into [0, 1].

        Clamping means a misbehaving random source can skew the spread but never push a delay
        outside ``[delay * (1 - jitter), delay * (1 + jitter)]``.
        """
        draw = 0.5 if math.isnan(draw) else min(max(draw, 0.0), 1.0)  # NaN -> no jitter
        return max(0.0, delay * (1.0 + self.jitter * (2.0 * draw - 1.0)))

    def delay(self, attempt: int, random: Callable[[], float]) -> float:
        """The jittered delay after ``attempt`` consecutive bad exits; draws once from ``random``."""
        base = self.base_delay(attempt)
        if base == 0.0 or self.jitter == 0.0:
            return base
        return self.jittered(base, random())


class Backoff:
    """The backoff state of one process: how many bad exits in a row, and the current delay.

    Which exits count (the planner's rule, recorded here so it is tested in one place):

    * a failure or a loss always counts;
    * a clean exit of a daemon counts only if the run was shorter than ``reset_after``.  A daemon is
      meant to keep running, so one that exits 0 after two seconds is crash-looping as surely as
      one that exits 1 (kubelet, Nomad and systemd treat clean exits of always-restart services the
      same way); one that ran for at least ``reset_after`` was healthy and restarts without delay.
      Daemons that use ``min_duration`` as a period (run, exit 0, run again) should therefore not
      opt in, or should set ``reset_after`` below their usual run time;
    * whatever the exit, a run of at least ``reset_after`` seconds first resets the count, so the
      next bad exit waits only ``initial``.

    A run whose start is unknown (``started=None``) is treated as short: never reset on a guess.
    """

    __slots__ = ('_attempts', '_delay', '_policy', '_random')

    def __init__(self, policy: BackoffPolicy, random: Callable[[], float] = _random.random) -> None:
        self._policy = policy
        self._random = random
        self._attempts = 0
        self._delay = 0.0

    @property
    def policy(self) -> BackoffPolicy:
        return self._policy

    @property
    def attempts(self) -> int:
        """Consecutive bad exits since the last reset."""
        return self._attempts

    @property
    def delay(self) -> float:
        """The delay chosen at the most recent exit, counted from that exit (0 if none applies)."""
        return self._delay

    def record_exit(self, started: float | None, stopped: float, clean: bool) -> float:
        """Account for a run that ended at ``stopped`` and return the delay before the next start.

        ``clean`` is True for a successful exit, False for a failure or a loss.
        """
        long_run = started is not None and stopped - started >= self._policy.reset_after
        if long_run:
            self._attempts = 0
        if clean and long_run:
            self._delay = 0.0
        else:
            self._attempts += 1
            self._delay = self._policy.delay(self._attempts, self._random)
        return self._delay
