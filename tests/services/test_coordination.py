"""Coordination: the server never waits; every waiter is answered once; no grant after timeout."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import Runtime, receive, send, spawn
from foundation.errors import (
    BarrierTimeout,
    InvalidArgument,
    LockTimeout,
    NotInProcess,
    NotLockHolder,
)
from foundation.kernel.api import wait_exit
from foundation.kernel.child_spec import ChildSpec
from foundation.kernel.supervisor import Supervisor
from foundation.services.coordination import Coordination, Lease
from foundation.testing import crash, restarted, sync

# Each test's runtime has its own in-memory store: the first incarnation's tokens are 1, 2, 3.
pytestmark = pytest.mark.foundation(store="memory://")


async def start() -> Any:
    return await Coordination.start_link()


async def test_lock_is_granted_at_once_when_free_with_a_growing_fencing_token(
    runtime: Runtime,
) -> None:
    await start()
    leases: list[Lease] = []

    async def worker() -> None:
        lease = await Coordination.acquire("db", lease=10)
        leases.append(lease)
        await Coordination.release(lease)

    for _ in range(3):
        await wait_exit(spawn(worker))
    assert [lease.token for lease in leases] == [1, 2, 3]
    assert await Coordination.lock_status("db") is None


async def test_waiters_are_granted_in_order_when_the_holder_releases(runtime: Runtime) -> None:
    await start()
    order: list[str] = []

    async def worker(tag: str) -> None:
        lease = await Coordination.acquire("res", lease=60, timeout=30)
        order.append(tag)
        await receive()
        await Coordination.release(lease)

    pids = {tag: spawn(worker, tag) for tag in "abc"}  # their requests queue in this order
    await sync(pids["a"])  # a holds the lock; b and c wait in the server's queue
    for tag in "abc":
        send(pids[tag], "go")
        await wait_exit(pids[tag])
    assert order == ["a", "b", "c"]


async def test_g1_flaw11_lock_never_granted_after_timeout(runtime: Runtime) -> None:
    await start()
    outcome: list[Any] = []

    async def holder() -> None:
        lease = await Coordination.acquire("x", lease=100)
        await receive()
        await Coordination.release(lease)

    async def impatient() -> None:
        try:
            await Coordination.acquire("x", timeout=2)
        except LockTimeout as err:
            outcome.append((err.code, runtime.clock.now()))

    h = spawn(holder)
    await sync(h)
    i = spawn(impatient)
    await wait_exit(i)
    send(h, "release")
    await wait_exit(h)
    status = await Coordination.lock_status("x")
    assert outcome == [("lock_timeout", pytest.approx(2.0, abs=0.002))]
    assert status is None  # freed, and not granted to the caller that gave up


async def test_lease_expires_on_the_runtime_clock_and_the_next_waiter_gets_it(
    runtime: Runtime,
) -> None:
    await start()
    got: list[Lease] = []

    async def sleeper() -> None:
        await Coordination.acquire("job", lease=5)
        await receive()

    async def waiter() -> None:
        got.append(await Coordination.acquire("job", lease=5, timeout=60))

    s = spawn(sleeper)
    await sync(s)
    await wait_exit(spawn(waiter))
    assert got[0].token == 2
    assert runtime.clock.now() == pytest.approx(5.0)
    with pytest.raises(NotLockHolder):
        await Coordination.release(Lease("job", s, 1, 5.0))


async def test_holder_death_frees_the_lock(runtime: Runtime) -> None:
    await start()

    async def holder() -> None:
        await Coordination.acquire("y", lease=1000)
        await receive()

    h = spawn(holder)
    await sync(h)
    assert (await Coordination.lock_status("y")) is not None
    await crash(h)
    await sync("coordination")
    assert await Coordination.lock_status("y") is None


async def test_renew_extends_a_current_lease_and_refuses_an_ended_one(runtime: Runtime) -> None:
    await start()
    results: list[Any] = []

    async def body() -> None:
        lease = await Coordination.acquire("r", lease=5)
        runtime.clock.advance(4)
        lease = await Coordination.renew(lease, seconds=5)
        results.append(lease.expires_at)
        await Coordination.release(lease)
        try:
            await Coordination.renew(lease)
        except NotLockHolder as err:
            results.append(err.code)
        try:
            await Coordination.acquire("r", lease=5)
            await Coordination.acquire("r", lease=5)
        except InvalidArgument:
            results.append("reentrant")

    await wait_exit(spawn(body))
    assert results == [pytest.approx(9.0), "not_lock_holder", "reentrant"]


async def test_barrier_opens_when_all_parties_wait_and_answers_each_once(runtime: Runtime) -> None:
    await start()
    await Coordination.create_barrier("b", 3)
    passed: list[float] = []

    async def party(delay: float) -> None:
        await runtime.clock.sleep(delay)
        await Coordination.wait_barrier("b")
        passed.append(runtime.clock.now())

    pids = [spawn(party, d) for d in (1.0, 2.0, 3.0)]
    for p in pids:
        await wait_exit(p)
    assert passed == [3.0, 3.0, 3.0]


async def test_barrier_waiter_that_timed_out_is_not_counted(runtime: Runtime) -> None:
    await start()
    await Coordination.create_barrier("b", 2)
    results: list[Any] = []

    async def early() -> None:
        try:
            await Coordination.wait_barrier("b", timeout=1)
        except BarrierTimeout as err:
            results.append(err.code)

    async def late() -> None:
        await runtime.clock.sleep(2)
        try:
            await Coordination.wait_barrier("b", timeout=1)
        except BarrierTimeout:
            results.append("late timed out too")

    await wait_exit(spawn(early))
    await wait_exit(spawn(late))
    assert results == ["barrier_timeout", "late timed out too"]


async def test_leader_election_with_lease_term_and_failover(runtime: Runtime) -> None:
    await start()
    seen: list[Any] = []

    async def candidate(tag: str) -> None:
        lead = await Coordination.elect("team", lease=10)
        seen.append((tag, lead.term, lead.leader is self_pid()))
        await receive()

    def self_pid() -> Any:
        from foundation import current_pid

        return current_pid()

    a = spawn(candidate, "a")
    await sync(a)
    b = spawn(candidate, "b")
    await sync(b)
    await crash(a)
    c = spawn(candidate, "c")
    await sync(c)
    assert seen == [("a", 1, True), ("b", 1, False), ("c", 2, True)]
    runtime.clock.advance(11)
    assert await Coordination.leader("team") is None
    send(b, "done")
    send(c, "done")


async def test_requests_from_outside_a_process_or_with_bad_input_get_clear_errors(
    runtime: Runtime,
) -> None:
    await start()
    with pytest.raises(NotInProcess):
        await Coordination.acquire("z")
    with pytest.raises(InvalidArgument):
        await Coordination.create_barrier("b", 0)
    with pytest.raises(InvalidArgument):
        await Coordination.wait_barrier("never-created")


async def _tokens_across_a_restart() -> tuple[list[int], list[int]]:
    """Lock tokens and leader terms granted before and after the coordination process (under a
    supervisor) crashes and is restarted; the old holders never released anything."""
    await Supervisor.start_link(
        [ChildSpec(id="coordination", start=Coordination.start_link)], strategy="one_for_one"
    )
    seen: list[int] = []

    async def holder() -> None:
        seen.append((await Coordination.acquire("db", lease=60)).token)
        seen.append((await Coordination.elect("team", lease=60)).term)
        await receive()

    first = spawn(holder)
    await sync(first)
    old = await crash("coordination")
    await restarted("coordination", old)
    second = spawn(holder)
    await sync(second)
    send(first, "done")
    send(second, "done")
    return seen[:2], seen[2:]


async def test_tokens_and_terms_grow_across_a_restart_through_the_stored_epoch(
    runtime: Runtime,
) -> None:
    before, after = await _tokens_across_a_restart()
    assert before == [1, 1]
    assert after == [(1 << 32) + 1, (1 << 32) + 1]  # the second incarnation's epoch


@pytest.mark.foundation(store=None)
async def test_without_a_store_tokens_and_terms_still_grow_across_a_restart(
    runtime: Runtime,
) -> None:
    before, after = await _tokens_across_a_restart()
    assert after[0] > before[0] and after[1] > before[1]
