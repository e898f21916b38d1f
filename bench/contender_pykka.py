"""pykka (threads): the same workloads with a ``ThreadingActor``; ``ask`` is the call, ``tell``
the cast. pykka has no supervisor, so there is no restart workload. ``ask`` and ``stop`` block
with their defaults (no timeout)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pykka
from memprobe import Probe, finish


class Counter(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        if message == "get":
            return self.count
        self.count += 1
        return None


def call_rate(n: int) -> float:
    ref = Counter.start()
    try:
        ask = ref.ask
        for _ in range(max(n // 10, 100)):
            ask("get")
        t0 = time.perf_counter()
        for _ in range(n):
            ask("get")
        return n / (time.perf_counter() - t0)
    finally:
        ref.stop()


def cast_rate(n: int) -> float:
    ref = Counter.start()
    try:
        tell = ref.tell
        warm = max(n // 10, 100)
        for _ in range(warm):
            tell("inc")
        ref.ask("get")
        t0 = time.perf_counter()
        for _ in range(n):
            tell("inc")
        count = ref.ask("get")
        elapsed = time.perf_counter() - t0
        assert count == n + warm, count
        return n / elapsed
    finally:
        ref.stop()


def spawn_cycle(n: int) -> float:
    def one() -> None:
        ref = Counter.start()
        ref.ask("get")
        ref.stop()

    for _ in range(max(n // 10, 10)):
        one()
    t0 = time.perf_counter()
    for _ in range(n):
        one()
    return (time.perf_counter() - t0) / n * 1e6


def memory(n: int, probe: Probe) -> None:
    """Bytes per idle actor (each one a thread blocked on its inbox)."""
    warm = [Counter.start() for _ in range(100)]
    probe.start()
    refs = [Counter.start() for _ in range(n)]
    for ref in refs[-10:]:
        ref.ask("get")
    assert threading.active_count() >= n
    finish(probe.per_process(n), n)
    del warm


WORKLOADS: dict[str, Callable[[int], Any]] = {
    "call": call_rate,
    "cast": cast_rate,
    "spawn": spawn_cycle,
}
