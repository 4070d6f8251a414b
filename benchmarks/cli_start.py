"""How long `xray-lake --help` and `xray-lake --version` take, as whole processes.

Run: python benchmarks/cli_start.py [--repeat 21] [--command 'xray-lake']

Starts each command `--repeat` times (after one untimed start that warms the disk cache and
writes the .pyc files) and prints the median, the fastest and the slowest wall time in ms
and the median CPU time (user + system: the wall time of an idle machine, near enough),
next to the interpreter's own start (`python -c pass`) for scale. Targets (issue 14):
--help <= 150 ms, --version <= 100 ms. The machine is shared: quote medians, and compare
figures taken in one sitting. `python -X importtime -m xray_lake --help` shows where the
time goes; tests/test_cli_start.py checks that --help loads no engine.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

NOT_PASSED = ("PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE")
"""Unset for the timed starts: an installed CLI runs from cached bytecode (the warm-up start
writes it), not from source compiled at every start."""


def timings(argv: Sequence[str], repeat: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) time in ms of `repeat` runs of `argv`, output discarded.

    CPU time is what the start costs on an idle core; wall time also holds the waits of a
    busy machine."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_PASSED}
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                   check=True)  # warm-up, untimed
    wall, cpu = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       check=True)
        wall.append((time.perf_counter() - start) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return wall, cpu


def default_command() -> list[str]:
    """The console script next to this interpreter, else `python -m xray_lake`."""
    script = shutil.which("xray-lake", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "xray_lake"]


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="timed starts per command")
    parser.add_argument("--command", help="the CLI to start (default: the console script "
                                          "of this interpreter)")
    opts = parser.parse_args(args)
    cli = shlex.split(opts.command) if opts.command else default_command()
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"], None),
        ("xray-lake --help", [*cli, "--help"], 150.0),
        ("xray-lake --version", [*cli, "--version"], 100.0),
    ]
    print(f"{opts.repeat} starts each, ms; CLI: {shlex.join(cli)}; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'command':<22} {'median':>8} {'min':>8} {'max':>8} {'cpu med':>8}  target (median)")
    for name, argv, target in cases:
        wall, cpu = timings(argv, opts.repeat)
        median = statistics.median(wall)
        verdict = "" if target is None else (
            f"<= {target:.0f} " + ("ok" if median <= target else "MISSED"))
        print(f"{name:<22} {median:>8.1f} {min(wall):>8.1f} {max(wall):>8.1f} "
              f"{statistics.median(cpu):>8.1f}  {verdict}")


if __name__ == "__main__":
    main()
