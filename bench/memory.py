"""Peak memory of this process, for the benchmarks' child processes."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_kib() -> int:
    """This process's own peak resident set (VmHWM), in KiB.

    Not ``getrusage(...).ru_maxrss``: Linux carries the parent's peak over ``exec``, so a
    child started by a benchmark that already holds gigabytes would report the parent's
    figure instead of its own.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # elsewhere: best effort
