"""Deterministic testing for Foundation systems: a virtual clock and synchronous helpers.

Installed as a pytest plugin (``pytest11``): the ``runtime`` fixture gives each test a fresh
Runtime on a virtual clock that jumps ahead whenever everything is idle, so no test ever sleeps.
See ``docs/testing.md``.
"""

from foundation.testing.faults import FaultyStore as FaultyStore
from foundation.testing.helpers import WaitTimeout as WaitTimeout
from foundation.testing.helpers import assert_emitted as assert_emitted
from foundation.testing.helpers import crash as crash
from foundation.testing.helpers import get_state as get_state
from foundation.testing.helpers import restarted as restarted
from foundation.testing.helpers import sync as sync
from foundation.testing.helpers import wait_until as wait_until
from foundation.testing.virtual_clock import VirtualClock as VirtualClock
from foundation.testing.virtual_clock import VirtualTimeLoop as VirtualTimeLoop

__all__ = [
    "FaultyStore",
    "VirtualClock",
    "VirtualTimeLoop",
    "WaitTimeout",
    "assert_emitted",
    "crash",
    "get_state",
    "restarted",
    "sync",
    "wait_until",
]
