"""DeadLetterQueue: durable before acknowledged, retried with backoff, purged, never silent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from foundation import GenServer, Runtime, Supervisor, call, cast
from foundation.errors import InvalidArgument, NoProcess, NotFound, PersistenceError
from foundation.kernel.context import current_runtime
from foundation.persistence import MemoryStore, SQLiteStore
from foundation.services import DeadLetterQueue, Services, Signal, SignalBus
from foundation.testing import crash, restarted, sync

from ._support import FailingStore, Inbox, in_fresh_runtime


async def start(runtime: Runtime, **kw: Any) -> None:
    runtime.store = runtime.store or MemoryStore()
    await Supervisor.start_link([DeadLetterQueue.child_spec(epoch=0.0, **kw)])


async def test_3f3_dead_letters_are_stored_before_put_answers_and_survive_a_queue_restart(
    runtime: Runtime,
) -> None:
    await start(runtime)
    first = await DeadLetterQueue.put("inbox", {"n": 1}, "receiver_down", {"by": "test"})
    assert (await runtime.store.load(f"dlq/{first}")) is not None  # type: ignore[union-attr]
    await DeadLetterQueue.put("inbox", object(), "noproc", {"pid": object()})
    old = runtime.whereis("dead_letters")
    crash(old)  # type: ignore[arg-type]
    await restarted("dead_letters", old)
    entries = await DeadLetterQueue.list(recipient="inbox")  # reloaded from the store
    assert [(e.reason, e.message_kind) for e in entries] == [
        ("receiver_down", "json"), ("noproc", "repr"),
    ]  # fmt: skip
    assert entries[0].message == {"n": 1}
    assert entries[0].metadata == {"by": "test"}
    assert entries[1].metadata["pid"].startswith("<object object")  # kept as its repr
    stats = await DeadLetterQueue.stats()
    assert stats["by_reason"] == {"receiver_down": 1, "noproc": 1}
    assert stats["by_recipient"] == {"inbox": 2}


async def test_3f3_a_dead_letter_for_a_queue_that_is_not_running_is_an_error_not_a_loss(
    runtime: Runtime,
) -> None:
    with pytest.raises(NoProcess, match="dead_letters"):
        await DeadLetterQueue.put("inbox", "hello", "noproc")
    with pytest.raises(NoProcess):
        await DeadLetterQueue.sink()("inbox", "hello", "noproc", {})


def test_dead_letters_survive_a_restart_of_the_whole_runtime(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"

    async def first(rt: Runtime) -> str:
        await DeadLetterQueue.start_link(epoch=1_000.0)
        return await DeadLetterQueue.put("billing", {"invoice": 7}, "timeout")

    async def second(rt: Runtime) -> Any:
        await DeadLetterQueue.start_link(epoch=2_000.0)
        return await DeadLetterQueue.list()

    entry_id = in_fresh_runtime(SQLiteStore(path), first)
    (entry,) = in_fresh_runtime(SQLiteStore(path), second)
    assert (entry.id, entry.recipient, entry.message) == (entry_id, "billing", {"invoice": 7})
    assert entry.first_failure == 1_000.0


async def test_retry_redelivers_by_call_with_backoff_and_removes_what_was_delivered(
    runtime: Runtime,
) -> None:
    await start(runtime, backoff=10.0)
    await Inbox.start(name="inbox")
    cast("inbox", True)  # silent: deliveries time out
    entry_id = await DeadLetterQueue.put("inbox", "hello", "timeout")
    await DeadLetterQueue.put("elsewhere", "other", "timeout")
    assert await DeadLetterQueue.retry(recipient="inbox", timeout=1.0) == {
        "delivered": 0, "failed": 1, "not_due": 0, "not_retryable": 0,
    }  # fmt: skip
    entry = await DeadLetterQueue.get(entry_id)
    assert (entry.attempts, entry.metadata["last_error"]) == (2, "call_timeout")
    assert entry.next_retry_at == pytest.approx(1.0 + 10.0)  # failed at t=1, backs off 10 s
    assert (await DeadLetterQueue.retry(recipient="inbox"))["not_due"] == 1
    await runtime.clock.sleep(10)
    assert (await DeadLetterQueue.retry(recipient="inbox", timeout=1.0))["failed"] == 1
    assert (await DeadLetterQueue.get(entry_id)).next_retry_at == pytest.approx(12.0 + 20.0)
    cast("inbox", False)
    await runtime.clock.sleep(20)
    assert (await DeadLetterQueue.retry(recipient="inbox"))["delivered"] == 1
    assert [e.recipient for e in await DeadLetterQueue.list()] == ["elsewhere"]
    assert await call("inbox", "got") == ["hello"]
    with pytest.raises(NotFound):
        await DeadLetterQueue.get(entry_id)


async def test_signals_are_kept_as_signals_and_retried_by_send_to_their_subscriber(
    runtime: Runtime,
) -> None:
    await start(runtime)
    subscriber = await Inbox.start()
    signal = Signal(type="task.done", data={"task": 1})
    await DeadLetterQueue.put(subscriber, signal, "subscriber_overloaded")
    (entry,) = await DeadLetterQueue.list()
    assert (entry.message_kind, entry.delivery, entry.recipient_is_pid) == ("signal", "send", True)
    assert (await DeadLetterQueue.retry())["delivered"] == 1
    ((got, _),) = await call(subscriber, "got")
    assert got == signal  # a Signal again, sent as the bus sends it


class Napper(GenServer):
    """Naps for a long time on a cast, so its mailbox fills meanwhile."""

    async def handle_cast(self, request: Any, state: Any) -> Any:
        await current_runtime().clock.sleep(100)
        return state

    async def handle_info(self, msg: Any, state: Any) -> Any:
        return state


async def test_a_bus_hands_its_undeliverable_signals_to_the_queue(runtime: Runtime) -> None:
    await start(runtime)
    bus = await SignalBus.start_link(name="bus", dead_letters=DeadLetterQueue.sink(),
                                     max_pending=1)  # fmt: skip
    napper = await Napper.start()
    await SignalBus.subscribe(bus, "task.*", subscriber=napper)
    cast(napper, "nap")
    assert await SignalBus.publish(bus, "task.one") == 1  # waits in the mailbox
    assert await SignalBus.publish(bus, "task.two") == 0  # overloaded: dead-lettered
    (entry,) = await DeadLetterQueue.list()
    assert (entry.reason, entry.recipient, entry.message["type"]) == (
        "subscriber_overloaded", str(napper), "task.two",
    )  # fmt: skip
    assert entry.metadata["bus"] == str(bus)


async def test_unserialisable_messages_are_kept_for_inspection_never_retried(
    runtime: Runtime,
) -> None:
    await start(runtime)
    await DeadLetterQueue.put("inbox", {1, 2}, "noproc")
    (entry,) = await DeadLetterQueue.list()
    assert (entry.message_kind, entry.message) == ("repr", "{1, 2}")
    assert await DeadLetterQueue.retry() == {
        "delivered": 0, "failed": 0, "not_due": 0, "not_retryable": 1,
    }  # fmt: skip


async def test_expired_entries_are_purged_by_age_or_attempts(runtime: Runtime) -> None:
    await start(runtime)
    await DeadLetterQueue.put("a", 1, "r")
    await runtime.clock.sleep(100)
    tried = await DeadLetterQueue.put("b", 2, "r")
    await DeadLetterQueue.retry(recipient="b", timeout=0.1)  # "b" is not running: attempt 2
    assert (await DeadLetterQueue.get(tried)).attempts == 2
    assert await DeadLetterQueue.purge(max_age=3600) == 0
    assert await DeadLetterQueue.purge(max_age=50) == 1  # "a", 100 s old
    assert await DeadLetterQueue.purge(max_attempts=2) == 1  # "b"
    assert await DeadLetterQueue.list() == []
    with pytest.raises(InvalidArgument):
        await DeadLetterQueue.purge(max_age=-1)
    with pytest.raises(InvalidArgument):
        await DeadLetterQueue.purge(max_attempts=0)


async def test_everything_is_purged_without_a_bound_and_listed_with_a_limit(
    runtime: Runtime,
) -> None:
    await start(runtime)
    for i in range(5):
        await DeadLetterQueue.put("x", i, "r")
        await runtime.clock.sleep(1)
    assert [e.message for e in await DeadLetterQueue.list(limit=2)] == [0, 1]
    assert (await DeadLetterQueue.stats())["oldest"] == 0.0
    assert await DeadLetterQueue.purge() == 5
    assert await runtime.store.list("dlq/") == []  # type: ignore[union-attr]


async def test_other_services_hand_what_they_cannot_deliver_to_the_queue(
    runtime: Runtime,
) -> None:
    from foundation.kernel.api import wait_exit
    from foundation.services import CircuitBreaker, Delivery

    runtime.store = MemoryStore()
    await Supervisor.start_link(Services.child_specs(epoch=0.0))
    inbox = await Inbox.start(name="inbox")
    assert await Delivery.send("inbox", "first") == "delivered"
    await CircuitBreaker.trip("deliver:inbox")
    for m in ("a", "b"):
        assert await Delivery.send("inbox", m) == "buffered"
    crash(inbox)
    await wait_exit(inbox)
    await sync("delivery")
    entries = await DeadLetterQueue.list(reason="receiver_down")
    assert [(e.recipient, e.message) for e in entries] == [("inbox", "a"), ("inbox", "b")]
    assert len(await runtime.store.list("dlq/")) == 2  # type: ignore[union-attr]


async def test_a_dead_letter_the_store_refused_is_an_error_for_the_sender(
    runtime: Runtime,
) -> None:
    store = runtime.store = FailingStore()
    await start(runtime)
    store.fail_saves = 1
    with pytest.raises(PersistenceError):
        await DeadLetterQueue.put("inbox", "lost?", "noproc")  # the sender knows: not lost silently
    await DeadLetterQueue.put("inbox", "kept", "noproc")
    assert [e.message for e in await DeadLetterQueue.list()] == ["kept"]


async def test_a_pid_recipient_is_only_known_while_the_queue_that_took_it_runs(
    runtime: Runtime,
) -> None:
    await start(runtime)
    subscriber = await Inbox.start()
    await DeadLetterQueue.put(subscriber, Signal(type="a.b"), "subscriber_overloaded")
    old = runtime.whereis("dead_letters")
    crash(old)  # type: ignore[arg-type]
    await restarted("dead_letters", old)
    assert (await DeadLetterQueue.retry())["failed"] == 1  # a pid means nothing once forgotten
    (entry,) = await DeadLetterQueue.list()
    assert (entry.attempts, entry.metadata["last_error"]) == (2, "not_found_key")
    assert await call(subscriber, "got") == []


async def test_the_queue_sweeps_by_itself_retrying_what_is_due_and_purging_what_expired(
    runtime: Runtime,
) -> None:
    await start(runtime, sweep_every=60.0, expire_after=1_000.0, max_attempts=3)
    await Inbox.start(name="inbox")
    await DeadLetterQueue.put("inbox", "hello", "timeout")
    await DeadLetterQueue.put("nobody", "lost", "noproc")  # never deliverable
    await DeadLetterQueue.put("inbox", object(), "bad")  # kept as a repr: never retried

    async def left() -> list[tuple[str, int]]:
        return [(e.recipient, e.attempts) for e in await DeadLetterQueue.list()]

    # Virtual time jumps only when every process is idle: each sweep is over when it moves on.
    await runtime.clock.sleep(61)  # the sweep at t=60 delivered "hello", tried "nobody" again
    assert await call("inbox", "got") == ["hello"]
    assert await left() == [("nobody", 2), ("inbox", 1)]
    await runtime.clock.sleep(60)  # t=121: "nobody" tried a third time
    assert await left() == [("nobody", 3), ("inbox", 1)]
    store = runtime.store
    assert isinstance(store, MemoryStore)
    assert await store.forget_deleted("dlq/") == 0  # the delivered entry's tombstone: gone
    await runtime.clock.sleep(60)  # t=181: "nobody" purged (3 attempts)
    assert await left() == [("inbox", 1)]
    await runtime.clock.sleep(840)  # t=1021: the repr entry, 1,000 s old, purged
    assert await left() == []


async def test_a_queue_with_sweeps_off_keeps_every_entry_until_asked(runtime: Runtime) -> None:
    await start(runtime, sweep_every=None)
    await DeadLetterQueue.put("nobody", "lost", "noproc")
    await runtime.clock.sleep(100_000)
    assert [e.attempts for e in await DeadLetterQueue.list()] == [1]
    with pytest.raises(InvalidArgument):
        await DeadLetterQueue.start_link(name="other", sweep_every=0)
    with pytest.raises(InvalidArgument):
        await DeadLetterQueue.start_link(name="other", max_attempts=0)
