"""``foundation lint``: an AST checker for the doctrine of DESIGN.md section 7 (FND001-FND008).

Run it as ``foundation lint PATH...`` or ``python -m foundation.lint PATH...``; it prints
``path:line:col: CODE message`` per finding and exits with 0 (clean), 1 (findings) or 2 (usage
error, or a file that does not parse). A ``# noqa: FNDxxx`` comment on the reported line
silences that code there; ``[tool.foundation.lint]`` in ``pyproject.toml`` selects rules, names
test paths and ignores codes per path (see ``foundation.lint.config``).

The rules, each defined precisely in its class docstring (``foundation.lint.rules``):

- FND001 orphan task: ``create_task``/``ensure_future`` whose result is dropped.
- FND002 thread, process or executor spawned outside the kernel.
- FND003 raw put into another process's mailbox (``.mailbox.append``, ``.deliver``, ``._proc``).
- FND004 blocking call inside ``async def`` (``time.sleep``, ``requests``, ``subprocess.run``...).
- FND005 sleep or wall-clock polling in tests.
- FND006 module-level mutable runtime state, and ``global``.
- FND007 broad ``except`` that swallows the error.
- FND008 telemetry handler used to wait for completion.

From Python: ``check_source(source, path, config)`` returns the sorted ``Finding`` list for one
module, ``check_paths(paths, config)`` for files and directories, ``main(argv)`` is the command.
"""

from foundation.lint.checker import check_file as check_file
from foundation.lint.checker import check_paths as check_paths
from foundation.lint.checker import check_source as check_source
from foundation.lint.cli import main as main
from foundation.lint.config import Config as Config
from foundation.lint.config import find_config as find_config
from foundation.lint.config import load_config as load_config
from foundation.lint.finding import Finding as Finding
from foundation.lint.rules import RULES as RULES
from foundation.lint.rules import Rule as Rule

__all__ = [
    "Config",
    "Finding",
    "RULES",
    "Rule",
    "check_file",
    "check_paths",
    "check_source",
    "find_config",
    "load_config",
    "main",
]
