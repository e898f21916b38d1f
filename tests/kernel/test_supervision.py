"""Restart intensity as a pure function of the clock (OTP's add_restart)."""

from __future__ import annotations

from foundation.kernel.supervision import add_restart


def test_restart_at_the_window_edge_still_counts() -> None:
    kept, ok = add_restart([0.0], now=5.0, max_restarts=1, max_seconds=5.0)
    assert kept == [0.0, 5.0]
    assert not ok


def test_restart_just_outside_the_window_is_forgotten() -> None:
    kept, ok = add_restart([0.0], now=5.001, max_restarts=1, max_seconds=5.0)
    assert kept == [5.001]
    assert ok


def test_zero_max_restarts_refuses_the_first_restart() -> None:
    assert add_restart([], now=1.0, max_restarts=0, max_seconds=5.0) == ([1.0], False)


def test_up_to_max_restarts_in_the_window_are_allowed() -> None:
    restarts: list[float] = []
    results = []
    for t in (0.0, 1.0, 2.0, 3.0):
        restarts, ok = add_restart(restarts, now=t, max_restarts=3, max_seconds=5.0)
        results.append(ok)
    assert results == [True, True, True, False]
