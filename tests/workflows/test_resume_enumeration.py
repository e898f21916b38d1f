"""RELIABILITY.md T8: workflow resume and replay.

A fixed five-step DAG with a fan-out and a fan-in (``a -> (b, c) -> d -> e``; ``c`` takes twice
as long as ``b``, so the steps complete one at a time, in the order a, b, c, d, e) is run
uninterrupted, then, for each crash point k = 0..5 ("k step results are durable"), again with
one crash at that point: of the WorkflowProcess, of the agent running step k+1 in the middle of
it, or of the coordinator. Each run must finish with the uninterrupted run's results, with the
side effects docs/workflows.md promises, and no stored workflow record may ever be partial.

What the docs promise (and what is checked):

- each step result is recorded exactly once (``RecordingStore.completions``), and a completed
  step never runs again: a step completed before the crash has exactly one real execution;
- a step runs at least once: one running when its workflow process died runs again, with the
  same ``$idempotency_key`` (``"<workflow id>:<step id>"``), so an action that deduplicates on
  it applies its effect exactly once;
- a killed agent fails the call it was serving with a retryable error and the step is retried;
- a killed coordinator is restarted alone and the workflow keeps running untouched.

Side effects are recorded in a ``Ledger`` the test owns (a plain object outside every process,
so no crash wipes it): it counts real executions, not what the system believes.

The crash point is exact without any sleep: ``wait_until`` on the store's record history
returns right after the save holding the k-th result, while virtual time stands still, so the
steps started by that same save (k+1, ...) have not yet had any effect.

Golden step log: ``golden/resume_dag.json`` is the per-step history (step, inputs, output,
attempt) of an uninterrupted run. The test compares a fresh run with it and fails with a diff
on any change. To accept a deliberate change, regenerate it with
``FOUNDATION_REGOLD=1 pytest tests/workflows/test_resume_enumeration.py -k golden`` and commit
the new file; a normal run never writes it.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

import pytest
from pydantic import BaseModel

from foundation import Runtime, Supervisor
from foundation.agents import Agent, AgentSupervisor, action, start_agent
from foundation.kernel.context import current_runtime
from foundation.testing import crash, restarted, wait_until
from foundation.workflows import (
    COORDINATOR,
    WorkflowSystem,
    await_workflow,
    start_workflow,
    workflow_status,
)
from foundation.workflows.process import WorkflowState, workflow_name

from ._support import RecordingStore

GOLDEN = Path(__file__).parent / "golden" / "resume_dag.json"
GOLDEN_FORMAT = 1
"""Bump when the golden file's layout changes (a mismatch then fails loudly, as any other)."""

ORDER = ("a", "b", "c", "d", "e")
"""The order in which the steps complete (virtual time: a 1 s, b 1 s and c 2 s in parallel,
d 1 s, e 1 s)."""

INPUT: Final = {"x": 5}
EXPECTED: Final = {
    "a": {"step": "a", "value": 10},
    "b": {"step": "b", "value": 11},
    "c": {"step": "c", "value": 30},
    "d": {"step": "d", "value": 41},
    "e": {"step": "e", "value": 410},
}
TIMEOUT = 60.0


def dag() -> dict[str, Any]:
    """a -> (b, c) -> d -> e, every step passing its idempotency key."""

    def step(sid: str, op: str, args: list[Any], seconds: float, deps: list[str]) -> dict[str, Any]:
        params = {"name": "$step.id", "op": op, "args": args, "seconds": seconds,
                  "key": "$idempotency_key"}  # fmt: skip
        return {"id": sid, "capability": "ledgered", "action": "apply", "params": params,
                "depends_on": deps}  # fmt: skip

    return {
        "name": "resume-dag",
        "steps": [
            step("a", "double", ["$input.x"], 1.0, []),
            step("b", "inc", ["$steps.a.result.value"], 1.0, ["a"]),
            step("c", "triple", ["$steps.a.result.value"], 2.0, ["a"]),
            step("d", "sum", ["$steps.b.result.value", "$steps.c.result.value"], 1.0, ["b", "c"]),
            step("e", "tenfold", ["$steps.d.result.value"], 1.0, ["d"]),
        ],
    }


@dataclass
class Ledger:
    """The outside world the steps act on; owned by the test, so it survives every crash."""

    starts: list[tuple[str, str, str]] = field(default_factory=list)  # (key, step, agent)
    effects: list[dict[str, Any]] = field(default_factory=list)  # every real execution
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)  # by idempotency key

    def running(self, key: str) -> str | None:
        """The agent that started the last run of ``key`` if that run has not had its effect."""
        starts = [agent for k, _, agent in self.starts if k == key]
        done = sum(1 for e in self.effects if e["key"] == key)
        return starts[-1] if len(starts) > done else None

    def executions(self, workflow_id: str) -> dict[str, int]:
        counts = dict.fromkeys(ORDER, 0)
        for effect in self.effects:
            if effect["key"].startswith(f"{workflow_id}:"):
                counts[effect["name"]] += 1
        return counts


class LedgerAgent(Agent):
    """Runs a step's arithmetic after ``seconds`` and records the run in the test's ledger; the
    effect is applied once per idempotency key (what a careful action does with it)."""

    capabilities = ("ledgered",)
    ledger: ClassVar[Ledger]

    class State(BaseModel):
        pass

    class Apply(BaseModel):
        name: str
        op: str
        args: list[int]
        seconds: float
        key: str

    @action
    async def apply(self, params: Apply, state: State) -> tuple[Any, State]:
        """Compute ``op(args)`` in ``seconds``, then record the effect."""
        rt = current_runtime()
        self.ledger.starts.append((params.key, params.name, self.agent_id))
        rt.notify_watchers()  # a test waiting for this start sees it now, mid-step
        await rt.clock.sleep(params.seconds)
        value = _compute(params.op, params.args)
        effect = {"key": params.key, "name": params.name, "inputs": params.model_dump()}
        self.ledger.effects.append(effect)
        self.ledger.applied.setdefault(params.key, {**effect, "value": value})
        return {"step": params.name, "value": value}, state


def _compute(op: str, args: list[int]) -> int:
    if op == "double":
        return args[0] * 2
    if op == "inc":
        return args[0] + 1
    if op == "triple":
        return args[0] * 3
    if op == "sum":
        return sum(args)
    if op == "tenfold":
        return args[0] * 10
    raise ValueError(op)


@dataclass
class Setup:
    runtime: Runtime
    store: RecordingStore
    ledger: Ledger


async def start(runtime: Runtime, agents: int = 3) -> Setup:
    store = RecordingStore()
    runtime.store = store
    ledger = Ledger()
    cls = type("LedgerAgent", (LedgerAgent,), {"ledger": ledger})
    await Supervisor.start_link(
        [*AgentSupervisor.child_specs(), *WorkflowSystem.child_specs()], max_restarts=100
    )
    for i in range(agents):
        await start_agent(cls, f"w{i}")
    return Setup(runtime, store, ledger)


def saves(setup: Setup, workflow_id: str) -> list[dict[str, Any]]:
    return setup.store.history.get(f"workflow/{workflow_id}", [])


def durable_results(setup: Setup, workflow_id: str) -> int | None:
    """How many step results the last save of the workflow's record holds (None: no save)."""
    history = saves(setup, workflow_id)
    if not history:
        return None
    return sum(1 for s in history[-1]["steps"].values() if s["status"] == "completed")


async def at_point(setup: Setup, workflow_id: str, k: int) -> None:
    """Return right after the save that makes the k-th step result durable (k = 0: the first
    save of the record), at the same virtual instant."""

    def reached() -> bool:
        done = durable_results(setup, workflow_id)
        return done is not None and done >= k

    await wait_until(reached, TIMEOUT, message=f"{k} results of {workflow_id} durable")
    assert durable_results(setup, workflow_id) == k  # exactly there, not past it


async def results_of(workflow_id: str) -> dict[str, Any]:
    entry = await await_workflow(workflow_id, timeout=TIMEOUT)
    assert entry.status == "completed", entry.error
    status = await workflow_status(workflow_id)
    assert status.status == "completed"
    return {k: s.result for k, s in status.steps.items()}


def check_never_partial(setup: Setup, workflow_id: str, final: dict[str, Any]) -> None:
    """Every save of the record validates and is consistent: a step is completed or running
    only after all its dependencies completed, a completed step holds its final result, a
    completed workflow holds every result; each result was recorded exactly once."""
    history = saves(setup, workflow_id)
    assert history
    deps = {s["id"]: s["depends_on"] for s in dag()["steps"]}
    for n, data in enumerate(history):
        state = WorkflowState.model_validate(data)
        where = f"save {n} of {workflow_id}"
        assert state.steps.keys() == set(ORDER), where
        for sid, step in state.steps.items():
            if step.status in ("completed", "running"):
                assert all(state.steps[d].status == "completed" for d in deps[sid]), where
            if step.status == "completed":
                assert step.result == final[sid], where
                assert step.error is None, where
            else:
                assert step.result is None, where
        if state.status == "completed":
            assert all(s.status == "completed" for s in state.steps.values()), where
            assert state.finished_at is not None, where
        else:
            assert state.status == "running", where
            assert state.finished_at is None, where
    assert history[-1]["status"] == "completed"
    assert setup.store.completions(workflow_id) == dict.fromkeys(ORDER, 1)


def check_effects(setup: Setup, workflow_id: str, completed_before: int) -> dict[str, int]:
    """At least once per step, exactly once for a step completed before the crash; every run
    carried the step's idempotency key, so the effect was applied exactly once per step."""
    runs = setup.ledger.executions(workflow_id)
    for i, sid in enumerate(ORDER):
        assert runs[sid] >= 1, (sid, runs)
        if i < completed_before:
            assert runs[sid] == 1, f"completed step {sid!r} ran again: {runs}"
    for effect in setup.ledger.effects:
        if effect["key"].startswith(f"{workflow_id}:"):
            assert effect["key"] == f"{workflow_id}:{effect['name']}"
    applied = {k for k in setup.ledger.applied if k.startswith(f"{workflow_id}:")}
    assert applied == {f"{workflow_id}:{s}" for s in ORDER}
    return runs


async def uninterrupted(setup: Setup, workflow_id: str) -> dict[str, Any]:
    await start_workflow(dag(), INPUT, workflow_id=workflow_id)
    final = await results_of(workflow_id)
    assert setup.ledger.executions(workflow_id) == dict.fromkeys(ORDER, 1)
    check_never_partial(setup, workflow_id, final)
    return final


POINTS = range(len(ORDER) + 1)


async def test_an_uninterrupted_run_gives_the_expected_results(runtime: Runtime) -> None:
    setup = await start(runtime)
    assert await uninterrupted(setup, "ref") == EXPECTED
    assert runtime.clock.now() == pytest.approx(5.0, abs=0.05)  # a, (b | c), d, e


async def started_to_point(runtime: Runtime, wid: str, k: int) -> tuple[Setup, dict[str, Any]]:
    """The system, an uninterrupted run's results, and workflow ``wid`` stopped at point k."""
    setup = await start(runtime)
    reference = await uninterrupted(setup, "ref")
    await start_workflow(dag(), INPUT, workflow_id=wid)
    await at_point(setup, wid, k)
    return setup, reference


@pytest.mark.parametrize("k", POINTS)
async def test_crash_of_the_workflow_process_after_k_results(runtime: Runtime, k: int) -> None:
    wid = f"wf-{k}"
    setup, reference = await started_to_point(runtime, wid, k)
    old = runtime.whereis(workflow_name(wid))
    at_crash = saves(setup, wid)[-1]["steps"]
    running = {s for s, info in at_crash.items() if info["status"] == "running"}
    if k == len(ORDER):
        assert old is None  # done means stopped: the last result's save finished it
    else:
        assert old is not None
        await crash(old)
        await restarted(workflow_name(wid), old, timeout=TIMEOUT)
    assert await results_of(wid) == reference
    check_never_partial(setup, wid, reference)
    runs = check_effects(setup, wid, completed_before=k)
    # the crash re-ran only the steps that were running at it (at most once more each)
    assert {s for s, n in runs.items() if n > 1} <= running, (runs, running)
    assert all(n <= 2 for n in runs.values()), runs
    status = await workflow_status(wid)
    assert all(status.steps[s].attempts == 1 for s in ORDER[:k])


@pytest.mark.parametrize("k", POINTS[:-1])
async def test_crash_of_the_agent_running_step_k_plus_1_mid_step(runtime: Runtime, k: int) -> None:
    wid = f"ag-{k}"
    victim_step = ORDER[k]
    key = f"{wid}:{victim_step}"
    setup, reference = await started_to_point(runtime, wid, k)
    agent = await wait_until(lambda: setup.ledger.running(key), TIMEOUT)
    started = runtime.clock.now()
    await crash(runtime.whereis(agent))
    assert runtime.clock.now() == started  # killed mid-step, before its effect
    assert setup.ledger.executions(wid)[victim_step] == 0
    assert await results_of(wid) == reference
    check_never_partial(setup, wid, reference)
    runs = check_effects(setup, wid, completed_before=k)
    assert runs == dict.fromkeys(ORDER, 1)  # the killed call had no effect; its retry did
    assert sum(1 for k_, _, _ in setup.ledger.starts if k_ == key) >= 2
    status = await workflow_status(wid)
    assert status.steps[victim_step].attempts >= 2  # a killed agent's call is retried


@pytest.mark.parametrize("k", POINTS)
async def test_crash_of_the_coordinator_after_k_results(runtime: Runtime, k: int) -> None:
    wid = f"co-{k}"
    setup, reference = await started_to_point(runtime, wid, k)
    process = runtime.whereis(workflow_name(wid))
    old = runtime.whereis(COORDINATOR)
    assert old is not None
    await crash(old)
    await restarted(COORDINATOR, old, timeout=TIMEOUT)
    assert runtime.whereis(workflow_name(wid)) == process  # the workflow was left alone
    assert await results_of(wid) == reference
    check_never_partial(setup, wid, reference)
    assert check_effects(setup, wid, completed_before=k) == dict.fromkeys(ORDER, 1)


# -- golden step log ---------------------------------------------------------------------------


def step_log(setup: Setup, workflow_id: str, status: WorkflowState) -> dict[str, Any]:
    """The per-step history of a run: step, inputs, output and attempt, in completion order."""
    steps = [
        {
            "step": effect["name"],
            "inputs": effect["inputs"],
            "output": status.steps[effect["name"]].result,
            "attempt": status.steps[effect["name"]].attempts,
        }
        for effect in setup.ledger.effects
        if effect["key"].startswith(f"{workflow_id}:")
    ]
    return {
        "format": GOLDEN_FORMAT,
        "workflow": status.name,
        "input": status.input,
        "status": status.status,
        "steps": steps,
    }


async def test_the_step_log_matches_the_golden_one(runtime: Runtime) -> None:
    setup = await start(runtime)
    wid = "golden"  # fixed: the idempotency keys in the inputs depend on it
    await start_workflow(dag(), INPUT, workflow_id=wid)
    await results_of(wid)
    log = step_log(setup, wid, await workflow_status(wid))
    text = json.dumps(log, indent=2, sort_keys=True) + "\n"
    if os.environ.get("FOUNDATION_REGOLD") == "1":  # deliberate regeneration only
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
        pytest.skip(f"rewrote {GOLDEN}; review and commit it, then run without FOUNDATION_REGOLD")
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} is missing: regenerate it with FOUNDATION_REGOLD=1")
    golden = GOLDEN.read_text()
    if text != golden:
        diff = "".join(
            difflib.unified_diff(
                golden.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{GOLDEN.name} (golden)",
                tofile="this run",
            )
        )
        pytest.fail(
            "the workflow's step log changed from the golden one (if deliberate, regenerate "
            f"with FOUNDATION_REGOLD=1 and commit the file):\n{diff}",
            pytrace=False,
        )
