"""Small helpers shared by the benchmark workloads: timing under a budget, RSS, sizes on disk,
printing and saving a result."""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
Row = tuple[Any, ...]


@dataclass
class Measured:
    """Times of one call repeated: the first one, and the median of the repeats after it."""

    first_ms: float
    median_ms: float  # of the repeats after the first; the first when there was none
    all_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(fn: Callable[[], T], repeat: int, budget_s: float) -> tuple[Measured, T]:
    """Call `fn` once, then up to `repeat` more times while the total stays under `budget_s`.

    A slow engine (seconds per query) gets fewer repeats instead of stretching the run; the
    first call is kept apart because it pays for cold caches. Returns the times and the
    first call's result.
    """
    t0 = time.perf_counter()
    result = fn()
    first = (time.perf_counter() - t0) * 1000
    spent = first / 1000
    times: list[float] = []
    while len(times) < repeat and spent + (times[-1] if times else first) / 1000 < budget_s:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
        spent += times[-1] / 1000
    median = statistics.median(times) if times else first
    return Measured(round(first, 2), round(median, 2), [round(first, 2), *(round(t, 2) for t in times)]), result


def rss_bytes() -> int:
    """Resident set size of this process: psutil when installed, else /proc/self/statm."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def tree_bytes(path: str, suffixes: Sequence[str] = ()) -> int:
    """Bytes of the files under `path` (only those ending with one of `suffixes`, if given)."""
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            if not suffixes or name.endswith(tuple(suffixes)):
                with contextlib.suppress(OSError):
                    total += os.path.getsize(os.path.join(dirpath, name))
    return total


def same_rows(a: Iterable[Row], b: Iterable[Row], rel_tol: float = 1e-9) -> bool:
    """Row lists equal value by value; floats within `rel_tol` (engines sum and interpolate
    in their own order, so the last bits may differ)."""
    left, right = list(a), list(b)
    if len(left) != len(right):
        return False
    for x, y in zip(left, right, strict=True):
        if len(x) != len(y):
            return False
        for u, v in zip(x, y, strict=True):
            if isinstance(u, float) or isinstance(v, float):
                if u is None or v is None or not math.isclose(u, v, rel_tol=rel_tol,
                                                              abs_tol=1e-12):
                    return False
            elif u != v:
                return False
    return True


def mib(n: int | float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def report(result: dict[str, Any], json_path: str | None, width: int) -> None:
    """Print `result` one `key value` line each (keys padded to `width`), and write it as JSON
    to `json_path` when one is given."""
    for key, value in result.items():
        print(f"{key:{width}s} {value}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(result, fh, indent=2)
