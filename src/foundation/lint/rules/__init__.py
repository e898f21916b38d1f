"""The doctrine's rules, FND001-FND008 (DESIGN.md section 7), one module per concept.

- FND001 orphan-task: ``create_task``/``ensure_future`` whose result is dropped.
- FND002 thread-outside-kernel: a thread, process or executor started outside the kernel.
- FND003 raw-mailbox-put: a message put straight into a mailbox, or ``pid._proc`` access.
- FND004 blocking-call-in-async: ``time.sleep``, ``requests``, ``subprocess.run``... in a
  coroutine.
- FND005 sleep-in-tests: sleeping, or polling the wall clock, in a test.
- FND006 module-mutable-state: a mutable container bound at module level; ``global``.
- FND007 swallowed-exception: a broad ``except`` that neither re-raises, logs nor uses the
  error.
- FND008 telemetry-used-to-wait: a telemetry handler that signals an Event/Future/Queue.

Each rule's class docstring is its precise definition; ``RULES`` lists one instance of each,
in code order.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from foundation.lint.rules.base import ModuleContext as ModuleContext
from foundation.lint.rules.base import Rule as Rule
from foundation.lint.rules.base import Violation as Violation
from foundation.lint.rules.blocking import BlockingCallInAsync as BlockingCallInAsync
from foundation.lint.rules.exceptions import SwallowedException as SwallowedException
from foundation.lint.rules.mailbox import RawMailboxPut as RawMailboxPut
from foundation.lint.rules.polling import SleepInTests as SleepInTests
from foundation.lint.rules.state import ModuleMutableState as ModuleMutableState
from foundation.lint.rules.tasks import OrphanTask as OrphanTask
from foundation.lint.rules.telemetry import TelemetryUsedToWait as TelemetryUsedToWait
from foundation.lint.rules.threads import ThreadOutsideKernel as ThreadOutsideKernel

__all__ = [
    "BY_CODE",
    "BlockingCallInAsync",
    "ModuleContext",
    "ModuleMutableState",
    "OrphanTask",
    "RULES",
    "RawMailboxPut",
    "Rule",
    "SleepInTests",
    "SwallowedException",
    "TelemetryUsedToWait",
    "ThreadOutsideKernel",
    "Violation",
]

RULES: Final[tuple[Rule, ...]] = (
    OrphanTask(),
    ThreadOutsideKernel(),
    RawMailboxPut(),
    BlockingCallInAsync(),
    SleepInTests(),
    ModuleMutableState(),
    SwallowedException(),
    TelemetryUsedToWait(),
)

#: Every rule by its code.
BY_CODE: Final = MappingProxyType({rule.code: rule for rule in RULES})
