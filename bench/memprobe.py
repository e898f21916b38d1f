"""Memory per idle process: a probe around the creation of ``n`` idle processes.

``tracemalloc`` counts the Python heap bytes the processes hold (exact, excludes the allocator's
slack and thread stacks); ``rss`` is the growth of the OS process's resident set (includes both,
page-granular). Each measurement runs in a fresh interpreter, which exits right after it (tearing
100,000 processes down is not what is measured).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tracemalloc


def rss_bytes() -> int:
    """The resident set size of this OS process (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class Probe:
    """``start()`` before creating the processes, ``per_process(n)`` once they are all idle."""

    def __init__(self, method: str) -> None:
        if method not in ("tracemalloc", "rss"):
            raise ValueError(f"unknown memory method {method!r}")
        self.method = method
        self.base = 0

    def start(self) -> None:
        gc.collect()
        if self.method == "tracemalloc":
            tracemalloc.start()
            self.base = tracemalloc.get_traced_memory()[0]
        else:
            self.base = rss_bytes()

    def per_process(self, n: int) -> float:
        gc.collect()
        if self.method == "tracemalloc":
            used = tracemalloc.get_traced_memory()[0] - self.base
            tracemalloc.stop()
        else:
            used = rss_bytes() - self.base
        return used / n


def finish(bytes_per_process: float, n: int) -> None:
    """Print the result as JSON and leave at once (no teardown of the idle processes)."""
    print(json.dumps({"bytes": bytes_per_process, "n": n}))
    sys.stdout.flush()
    os._exit(0)
