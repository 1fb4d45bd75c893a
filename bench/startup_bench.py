"""Start-up time of the commands that never talk to AWS, as a ratio to ``python -c "import boto3"``.

Every command is run the same number of times, interleaved (so a busy machine slows all of them alike). The
median CPU time (user + system, of the child process) is what the ratio uses: on a shared machine wall time
mostly measures the neighbours. Machines differ; ratios much less.

The commands run with bytecode caching on, whatever ``PYTHONDONTWRITEBYTECODE`` says here: an installed package
has its bytecode compiled by pip at install time, as boto3's is, so compiling this package's source on every
start would measure the development checkout, not the tool.

    .venv/bin/python bench/startup_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "loginwatch-org"
CONFIG = ROOT / "config" / "accounts.yaml"

COMMANDS: dict[str, list[str]] = {
    'python -c "import boto3"': [sys.executable, "-c", "import boto3"],
    "loginwatch-org --help": [str(CLI), "--help"],
    "loginwatch-org validate": [str(CLI), "validate", "-c", str(CONFIG)],
    # The same command through the typer application, which the executable skips for a plain validate.
    "validate through typer": [sys.executable, "-m", "loginwatch_org.cli", "validate", "-c", str(CONFIG)],
    "loginwatch-org export": [str(CLI), "export", "-c", str(CONFIG)],
}
BASELINE = 'python -c "import boto3"'


ENVIRONMENT = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def _time(command: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():
        _time(command)  # warm the file cache and the bytecode
    for _ in range(runs):
        for name, command in COMMANDS.items():
            samples[name].append(_time(command))
    baseline = statistics.median(cpu for cpu, _ in samples[BASELINE])
    header = f"{'command':<28} {'CPU (median)':>12} {'wall (median)':>14} {'CPU vs import boto3':>20}"
    print(f"{header}   ({runs} runs each)")
    for name, values in samples.items():
        cpu = statistics.median(value for value, _ in values)
        wall = statistics.median(value for _, value in values)
        print(f"{name:<28} {cpu * 1000:>9.0f} ms {wall * 1000:>11.0f} ms {cpu / baseline:>19.2f}x")


if __name__ == "__main__":
    main()
