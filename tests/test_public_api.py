"""The public surface: curated ``__all__`` everywhere, and lower layers never import higher ones."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from types import MappingProxyType

import pytest

import foundation

SRC = Path(foundation.__file__).parent
LAYERS = (
    "errors",
    "kernel",
    "persistence",
    "telemetry",
    "services",
    "agents",
    "workflows",
    "testing",
    "lint",
    "cli",
)
# A layer may import the layers before it in this order, never after (errors is everywhere).
RANK = MappingProxyType({name: i for i, name in enumerate(LAYERS)})


def all_modules() -> list[str]:
    names = ["foundation"]
    for info in pkgutil.walk_packages([str(SRC)], prefix="foundation."):
        names.append(info.name)
    return sorted(n for n in names if not n.endswith("__main__"))


@pytest.mark.parametrize("name", all_modules())
def test_every_module_defines_a_sorted_all_of_existing_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert list(exported) == sorted(exported), f"{name}.__all__ is not sorted"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names missing attributes: {missing}"
    assert module.__doc__, f"{name} has no docstring"


def test_the_contract_names_are_importable_from_foundation() -> None:
    contract = [
        "Runtime",
        "run",
        "GenServer",
        "Reply",
        "NoReply",
        "Stop",
        "Continue",
        "call",
        "cast",
        "send",
        "reply",
        "spawn",
        "spawn_link",
        "link",
        "unlink",
        "monitor",
        "demonitor",
        "exit",
        "whereis",
        "is_alive",
        "current_pid",
        "send_after",
        "cancel_timer",
        "Supervisor",
        "DynamicSupervisor",
        "TaskSupervisor",
        "Registry",
        "Pid",
        "Exit",
        "Down",
    ]
    missing = [n for n in contract if n not in foundation.__all__]
    assert missing == []
    from foundation.errors import CallTimeout, FoundationError, InitError, NoProcess, ProcessExited

    for err in (CallTimeout, NoProcess, ProcessExited, InitError):
        assert issubclass(err, FoundationError)


def test_every_error_has_a_distinct_stable_code() -> None:
    from foundation import errors

    classes = [
        getattr(errors, n)
        for n in errors.__all__
        if isinstance(getattr(errors, n), type) and issubclass(getattr(errors, n), Exception)
    ]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), codes
    for cls in classes:
        assert cls.__doc__ and cls.__doc__.startswith("Raised"), cls


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "foundation" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANK else None


def test_lower_layers_never_import_higher_ones() -> None:
    violations = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).parts
        own = rel[0].removesuffix(".py")
        if own not in RANK:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            for target in targets:
                layer = layer_of(target)
                if layer is not None and RANK[layer] > RANK[own]:
                    violations.append(f"{path.relative_to(SRC)} imports {target}")
    assert violations == []
