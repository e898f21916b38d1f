"""FND003: a message put straight into a process's mailbox, around call/cast/send."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from foundation.lint.rules.base import ModuleContext, Rule, Violation, call_name, spell, violation

__all__ = ["RawMailboxPut"]

_MAILBOX_MUTATORS = frozenset({"append", "appendleft", "extend", "insert", "put_nowait"})
_DELIVER_METHODS = frozenset({"deliver", "deliver_system"})
_OWN = frozenset({"self", "cls"})


class RawMailboxPut(Rule):
    """FND003 raw put into another process's mailbox.

    Reported:

    - a call ``<x>.mailbox.append/appendleft/extend/insert/put_nowait(...)``, whatever ``<x>`` is;
    - a call to a ``.deliver(...)`` or ``.deliver_system(...)`` method of any receiver;
    - reading or writing a ``._proc`` attribute of anything but ``self``/``cls`` (``pid._proc``
      is the kernel's handle on a live process).

    These skip what ``send``/``cast``/``call`` guarantee: the bounded-mailbox check, the wake-up
    of a waiting receiver, ``NoProcess`` for a dead target and telemetry. Not reported: ``send``,
    ``cast``, ``call``, reading ``len(x.mailbox)``, and ``self._proc`` in a class of your own.
    """

    code = "FND003"
    name = "raw-mailbox-put"
    hint = "talk to processes through call/cast/send (and is_alive/whereis to look them up)"

    def check(self, ctx: ModuleContext) -> Iterator[Violation]:
        for node in ctx.nodes:
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                func = node.func
                receiver = func.value
                if (
                    func.attr in _MAILBOX_MUTATORS
                    and isinstance(receiver, ast.Attribute)
                    and receiver.attr == "mailbox"
                ):
                    yield violation(
                        node,
                        f"`{call_name(node)}(...)` puts into a mailbox directly, bypassing "
                        "the mailbox bound and the receiver's wake-up",
                    )
                elif func.attr in _DELIVER_METHODS:
                    yield violation(
                        node,
                        f"`{call_name(node)}(...)` hands a message to a process directly, "
                        "bypassing send/cast/call",
                    )
            elif (
                isinstance(node, ast.Attribute)
                and node.attr == "_proc"
                and not (isinstance(node.value, ast.Name) and node.value.id in _OWN)
            ):
                yield violation(
                    node,
                    f"`{spell(node)}` reaches into the kernel's handle on another process",
                )
