"""Running a command and measuring it: wall time and the peak resident memory of the
process tree (what wait4 reports for the child: its own peak, or its largest waited-for
descendant's)."""

import os
import subprocess
import time


class Failed(Exception):
    pass


def run(command, quiet=True):
    """Runs `command`; returns (seconds, peak RSS in bytes). Raises Failed on a non-zero exit."""
    devnull = subprocess.DEVNULL if quiet else None
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=devnull, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise Failed(f"{' '.join(map(str, command))} exited with {process.returncode}: {stderr.strip()[-2000:]}")
    return seconds, usage.ru_maxrss * 1024  # Linux reports KiB


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def remove(*paths):
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
