"""What a compaction pass did: per partition, and in total (`compact()` returns it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """What compaction did to one partition."""

    table: str
    label: str
    date: str
    files_in: int
    files_out: int
    rows: int
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """The outcome of `compact()`: merged partitions, skipped ones, recoveries, errors."""

    partitions: tuple[PartitionResult, ...] = ()
    locked: tuple[str, ...] = ()
    """Partitions skipped because another live compactor holds their lock."""
    errors: tuple[str, ...] = ()
    """One line per partition that failed (its files are left as they were)."""
    rolled_back: int = 0
    rolled_forward: int = 0
    seconds: float = 0.0
    before: str = ""

    @property
    def files_in(self) -> int:
        return sum(p.files_in for p in self.partitions)

    @property
    def files_out(self) -> int:
        return sum(p.files_out for p in self.partitions)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def bytes_in(self) -> int:
        return sum(p.bytes_in for p in self.partitions)

    @property
    def bytes_out(self) -> int:
        return sum(p.bytes_out for p in self.partitions)
