"""What one process (or a sum of processes) uses: Aurora's `ProcessSample`.

A named tuple, as in Aurora, so code that unpacks it, indexes it or calls `_replace` keeps working;
`+` sums two samples instead of concatenating them.
"""

from __future__ import annotations

from typing import NamedTuple


class ProcessSample(NamedTuple):
    """Resource use of one process or a sum of them. `rate` is CPU cores in use (1.0 = one core)."""

    rate: float = 0.0
    user: float = 0.0
    system: float = 0.0
    rss: int = 0
    vms: int = 0
    nice: int | None = None
    status: str | None = None
    threads: int = 0

    @classmethod
    def empty(cls) -> ProcessSample:
        """Zeros, with nice and status unknown (None)."""
        return cls()

    def __add__(self, other: ProcessSample) -> ProcessSample:  # type: ignore[override]
        """Numbers add up; nice and status are the right-hand side's unless it has none."""
        return ProcessSample(
            rate=self.rate + other.rate, user=self.user + other.user, system=self.system + other.system,
            rss=self.rss + other.rss, vms=self.vms + other.vms,
            nice=other.nice if other.nice is not None else self.nice,
            status=other.status if other.status is not None else self.status,
            threads=self.threads + other.threads)

    def to_dict(self) -> dict[str, object]:
        """Aurora's observer JSON shape (cpu = rate, ram = rss, status as a string)."""
        return dict(cpu=self.rate, ram=self.rss, user=self.user, system=self.system, rss=self.rss,
                    vms=self.vms, nice=self.nice, status=str(self.status), threads=self.threads)
