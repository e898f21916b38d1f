"""The services supervisor: every service, in dependency order, rest_for_one, 3 restarts / 5 s."""

from __future__ import annotations

import pytest

from foundation import Runtime, Supervisor
from foundation.kernel.api import wait_exit
from foundation.persistence import MemoryStore
from foundation.services import Services, start_services
from foundation.testing import crash, restarted


async def test_the_services_tree_starts_every_service_in_dependency_order(
    runtime: Runtime,
) -> None:
    runtime.store = MemoryStore()
    sup = await start_services(epoch=0.0)
    assert runtime.whereis("services") == sup
    pids = [runtime.whereis(n) for n in Services.NAMES]
    assert all(pids)
    assert [p.id for p in pids] == sorted(p.id for p in pids)  # type: ignore[union-attr]
    assert [c.id for c in await Supervisor.which_children(sup)] == list(Services.NAMES)


async def test_g2_10_a_crashed_service_restarts_the_ones_after_it_and_none_before(
    runtime: Runtime,
) -> None:
    runtime.store = MemoryStore()
    await Supervisor.start_link([Services.supervisor_spec(epoch=0.0)])
    before = {n: runtime.whereis(n) for n in Services.NAMES}
    crash(before["scheduler"])  # type: ignore[arg-type]
    await restarted("health", before["health"])
    after = {n: runtime.whereis(n) for n in Services.NAMES}
    at = Services.NAMES.index("scheduler")
    assert all(after[n] == before[n] for n in Services.NAMES[:at])
    assert all(after[n] not in (None, before[n]) for n in Services.NAMES[at:])


async def test_the_services_give_up_after_three_restarts_in_five_seconds(
    runtime: Runtime,
) -> None:
    runtime.store = MemoryStore()
    sup = await Supervisor.start([Services.supervisor_spec(epoch=0.0)], max_restarts=0, name="root")
    services = runtime.whereis("services")
    for _ in range(3):
        old = runtime.whereis("feature_flags")
        crash(old)  # type: ignore[arg-type]
        await restarted("feature_flags", old)
    crash(runtime.whereis("feature_flags"))  # type: ignore[arg-type]
    await wait_exit(services)  # the fourth restart in the window: the services supervisor ends
    await wait_exit(sup)  # and its parent (no restarts allowed here) with it
    assert runtime.whereis("dead_letters") is None


async def test_http_pools_join_the_tree_when_asked(runtime: Runtime) -> None:
    pytest.importorskip("httpx")
    runtime.store = MemoryStore()
    await start_services(epoch=0.0, http_pools=True)
    names = [c.id for c in await Supervisor.which_children("services")]
    assert names.index("http_pools") == names.index("rate_limiter") + 1
