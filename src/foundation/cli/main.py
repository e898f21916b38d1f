"""Entry point and commands of the ``foundation`` command line (click + rich)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from foundation.cli.state import DEFAULT_STORE, store_option, store_url
from foundation.errors import FoundationError
from foundation.persistence import StateStore, open_store

__all__ = ["cli", "load_target", "main"]


def load_target(spec: str) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted); a clear error if it fails."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"expected module:attribute, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise click.BadParameter(f"cannot import module {module_name!r}: {err}") from err
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise click.BadParameter(f"{module_name!r} has no attribute {attr!r}") from None
    return target


@click.group()
@click.version_option(package_name="foundation-otp")
def cli() -> None:
    """Foundation: an OTP-grade, fault-tolerant runtime for multi-agent systems."""


@cli.command("run")
@click.argument("target")
@click.option("--uvloop", "use_uvloop", is_flag=True, help="Run on uvloop (foundation[fast]).")
@store_option(
    "State store URL of the persistent servers and agents (default: $FOUNDATION_STORE or "
    f"{DEFAULT_STORE}, a file in the working directory, created when first used); "
    "`none`: run with no store."
)
def run_cmd(target: str, use_uvloop: bool, url: str | None) -> None:
    """Run TARGET (module:attribute) until Ctrl-C or SIGTERM, then stop it in order.

    TARGET is a list of child specs (started under a root supervisor), an async function, or a
    function returning either.
    """
    from foundation.kernel.main import run

    store = _run_store(url)
    root = load_target(target)
    if callable(root) and not _is_async(root):
        root = root()
    run(root, use_uvloop=use_uvloop, store=store)


def _run_store(url: str | None) -> StateStore | None:
    """The store ``foundation run`` hands its runtime: None for ``none``, else the store the URL
    names, opened here so a bad URL is a usage error (the store connects on first use)."""
    chosen = store_url(url)
    if chosen.strip().lower() == "none":
        return None
    try:
        return open_store(chosen)
    except FoundationError as err:
        raise click.BadParameter(err.message, param_hint="'--store'") from err


def _is_async(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


@cli.command("lint", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def lint_cmd(args: tuple[str, ...]) -> None:
    """Check PATHS for the doctrine's rules (FND001-FND008), like `python -m foundation.lint`."""
    lint = importlib.import_module("foundation.lint")
    sys.exit(lint.main(list(args)))


@cli.command("demo")
@click.option("--workflows", default=300, show_default=True, help="Workflows to submit.")
@click.option("--kills", default=60, show_default=True, help="Processes the monkey kills.")
@click.option(
    "--store", default="foundation-demo.db", show_default=True, help="SQLite file (recreated)."
)
@click.option("--seed", default=1, show_default=True, help="Seed of the chaos monkey.")
@click.option(
    "--kill-process",
    "kill_process",
    type=int,
    default=0,
    is_flag=False,
    flag_value=4,
    help="Run the system in a child OS process and SIGKILL it N times (default 4).",
)
@click.option("--child", is_flag=True, hidden=True)
def demo_cmd(
    workflows: int, kills: int, store: str, seed: int, kill_process: int, child: bool
) -> None:
    """The whole system under a chaos monkey; the summary says what was lost (nothing)."""
    demo = importlib.import_module("foundation.cli.demo")
    sys.exit(
        demo.main(
            workflows=workflows,
            kills=kills,
            store=store,
            seed=seed,
            kill_process=kill_process,
            child=child,
        )
    )


def _add_state_commands() -> None:
    state = importlib.import_module("foundation.cli.state")
    cli.add_command(state.state_group)
    cli.add_command(state.workflows_cmd)


_add_state_commands()


def main(argv: list[str] | None = None) -> None:
    """Run the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    cli.main(args=argv, prog_name="foundation")
