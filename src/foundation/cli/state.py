"""``foundation state`` and ``foundation workflows``: what an operator needs to see in a store.

Both read a state store by URL (``--store``, else ``$FOUNDATION_STORE``, else the default of
the CLI and examples, ``sqlite:///foundation.db`` in the working directory) without starting any
process of the system: ``state list [PREFIX]`` lists keys with version and update time, ``state
show KEY`` prints a record as JSON, ``workflows [--status S]`` lists stored workflows.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from foundation.errors import FoundationError
from foundation.kernel.runtime import Runtime
from foundation.persistence.store import StateStore, Stored

__all__ = ["DEFAULT_STORE", "state_group", "store_option", "store_url", "workflows_cmd"]

DEFAULT_STORE = "sqlite:///foundation.db"
"""The store ``foundation run``, ``state`` and ``workflows`` use when none is named."""

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def store_option(
    help_text: str = f"State store URL (default: $FOUNDATION_STORE or {DEFAULT_STORE}).",
) -> Callable[[F], F]:
    """The ``--store URL`` option of the commands that use a store (passed as ``url``; None when
    not given: resolve it with ``store_url``)."""
    return click.option("--store", "url", default=None, metavar="URL", help=help_text)


_store_option = store_option()


def store_url(url: str | None) -> str:
    """The store URL to use: the option, then ``$FOUNDATION_STORE``, then the default."""
    return url or os.environ.get("FOUNDATION_STORE") or DEFAULT_STORE


def _with_store(url: str | None, work: Callable[[StateStore], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Runtime(store=store_url(url)) as rt:
            return await work(rt.store)

    try:
        return asyncio.run(main())
    except FoundationError as err:
        raise click.ClickException(err.message) from err


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="seconds")


@click.group("state")
def state_group() -> None:
    """Read what a state store holds (agents, workflows, services)."""


@state_group.command("list")
@click.argument("prefix", default="")
@_store_option
def list_cmd(prefix: str, url: str | None) -> None:
    """List the stored keys starting with PREFIX, with version and last update."""

    async def work(store: StateStore) -> list[Stored]:
        found = []
        for key in await store.list(prefix):
            rec = await store.load(key)
            if rec is not None:
                found.append(rec)
        return found

    records = _with_store(url, work)
    table = Table("key", "version", "schema", "updated")
    for rec in records:
        table.add_row(rec.key, str(rec.version), str(rec.schema_version), _when(rec.updated_at))
    console = Console()
    console.print(table)
    console.print(f"{len(records)} key(s) in {store_url(url)}")


@state_group.command("show")
@click.argument("key")
@_store_option
def show_cmd(key: str, url: str | None) -> None:
    """Print the record stored under KEY as JSON."""
    rec = _with_store(url, lambda store: store.load(key))
    if rec is None:
        raise click.ClickException(f"no record under {key!r} in {store_url(url)}")
    out = {
        "key": rec.key,
        "version": rec.version,
        "schema_version": rec.schema_version,
        "updated_at": _when(rec.updated_at),
        "data": rec.data,
    }
    click.echo(json.dumps(out, indent=2, sort_keys=True, default=str))


@click.command("workflows")
@click.option("--status", default=None, help="Only workflows with this status.")
@_store_option
def workflows_cmd(status: str | None, url: str | None) -> None:
    """List the stored workflows with their status and step progress."""

    async def work(store: StateStore) -> list[dict[str, Any]]:
        rows = []
        for key in await store.list("workflow/"):
            rec = await store.load(key)
            if rec is not None:
                rows.append(rec.data)
        return rows

    rows = [r for r in _with_store(url, work) if status is None or r.get("status") == status]
    table = Table("workflow", "name", "status", "steps done", "error")
    for data in rows:
        steps = data.get("steps") or {}
        done = sum(
            1 for s in steps.values() if isinstance(s, dict) and s.get("status") == "completed"
        )
        table.add_row(
            str(data.get("id", "?")),
            str(data.get("name", "")),
            str(data.get("status", "?")),
            f"{done}/{len(steps)}",
            str(data.get("error") or ""),
        )
    console = Console()
    console.print(table)
    console.print(f"{len(rows)} workflow(s) in {store_url(url)}")
