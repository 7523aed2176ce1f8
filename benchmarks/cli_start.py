"""How long does ``python -m spoco_core`` take to answer ``--help``, per command?

Each command line runs in a fresh interpreter (what a user waits for), several times; the table
gives the median and fastest wall time, the median CPU time (steadier on a shared machine) and
which heavy modules (torch, hdbscan, sklearn) the command imported to print its help.

    python -m benchmarks.cli_start            # [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

CASES = (
    ["--help"],
    ["synth", "--help"],
    ["evaluate", "--help"],
    ["suggest", "--help"],
    ["segment", "--help"],
    ["train", "--help"],
)
HEAVY = ("torch", "hdbscan", "sklearn")
_PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['spoco_core', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('spoco_core', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('HEAVY=' + ','.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n"
)


def _once(args: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child, heavy modules it imported) of one run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    heavy = next((line[6:] for line in out.stderr.splitlines() if line.startswith("HEAVY=")), "?")
    return seconds, cpu, heavy or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print("| command | median wall s | fastest wall s | median CPU s | heavy modules imported |")
    print("|---|---:|---:|---:|---|")
    for case in CASES:
        _once(case)  # warm the file cache
        runs = [_once(case) for _ in range(args.repeats)]
        wall = [t for t, _, _ in runs]
        cpu = statistics.median(c for _, c, _ in runs)
        line = " ".join(["python -m spoco_core", *case])
        print(
            f"| `{line}` | {statistics.median(wall):.2f} | {min(wall):.2f} | {cpu:.2f} | {runs[-1][2]} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
