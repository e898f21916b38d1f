"""Workflow definitions: a DAG of steps, validated before anything starts.

A ``Step`` targets an agent by ``capability`` (any healthy live agent offering it) or by
``agent`` id, runs one ``action`` with ``params``, after every step in ``depends_on``, within
``timeout`` seconds per attempt, and is retried by its ``retry`` policy when the error is
retryable (a ``RetryPolicy``, its dict form, or a ``foundation.services.retry.Retry``).

Params are templates. A string that is exactly a reference is replaced by its value, anywhere in
nested dicts and lists; every other value is kept as it is:

- ``"$input.a.b"``: that path of the workflow input (``"$input"``: all of it);
- ``"$steps.fetch.result.x"``: that path of step ``fetch``'s result (``fetch`` must be one of
  the step's dependencies, directly or not);
- ``"$workflow.id"``, ``"$step.id"`` and ``"$idempotency_key"`` (``"<workflow id>:<step id>"``,
  the same on every run of the step: a step may run more than once, see ``WorkflowProcess``).

Path parts are dict keys or list indexes (``"$steps.fetch.result.items.0"``). A literal string
that starts with ``$`` and one of those names is written with ``$$`` (``"$$input"`` is the
string ``"$input"``). ``validate_graph`` rejects duplicate or dotted step ids, unknown
dependencies, cycles (named: ``a -> b -> a``) and references to steps that are not
dependencies; ``check_input`` rejects ``$input`` paths the input does not have.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from foundation.errors import InvalidWorkflow
from foundation.services.retry import Retry

__all__ = [
    "RetryPolicy",
    "Step",
    "Workflow",
    "ready_steps",
    "render",
]

_ROOTS = ("input", "steps", "workflow", "step", "idempotency_key")
_FIXED = ("workflow.id", "step.id", "idempotency_key")


class RetryPolicy(BaseModel):
    """A step's retry policy as stored data; ``to_retry()`` gives the ``Retry`` it runs with.

    Waits grow from ``backoff`` by ``multiplier`` up to ``max_backoff`` (runtime-clock seconds,
    reduced by up to ``jitter`` of themselves); at most ``max_attempts`` calls, and none that
    would start later than ``max_elapsed`` seconds after the first (``None``: no such limit).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=10, ge=1)
    backoff: float = Field(default=0.05, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_backoff: float = Field(default=2.0, ge=0)
    jitter: float = Field(default=0.0, ge=0, le=1)
    max_elapsed: float | None = Field(default=None, gt=0)

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1 for the first), before any jitter."""
        return float(min(self.backoff * self.multiplier ** (attempt - 1), self.max_backoff))

    def to_retry(self, max_attempts: int | None = None, *, seed: int | str = 0) -> Retry:
        """The ``Retry`` this policy stands for (``max_attempts`` overrides the attempts); its
        jitter is drawn from a generator seeded with ``seed``, so it is repeatable."""
        return Retry.exponential(
            self.backoff,
            factor=self.multiplier,
            max_delay=self.max_backoff,
            jitter=self.jitter,
            max_attempts=max_attempts if max_attempts is not None else self.max_attempts,
            max_elapsed=self.max_elapsed,
            rng=random.Random(seed),
        )

    @classmethod
    def from_retry(cls, retry: Retry) -> RetryPolicy:
        """The stored form of an exponential or fixed ``Retry`` (others cannot be stored)."""
        if retry.retry_on:
            raise ValueError(
                "a workflow step retries retryable FoundationErrors only: a Retry with "
                f"retry_on={retry.retry_on!r} cannot be stored"
            )
        if retry.backoff == "exponential":
            backoff, multiplier, cap = retry.base, retry.factor, retry.max_delay
        elif retry.backoff == "fixed":
            backoff, multiplier, cap = retry.base, 1.0, retry.base
        else:
            raise ValueError(
                f"a {retry.backoff} Retry cannot be stored in a workflow step: use "
                "Retry.exponential or Retry.fixed, or a RetryPolicy"
            )
        return cls(
            max_attempts=retry.max_attempts,
            backoff=backoff,
            multiplier=multiplier,
            max_backoff=cap,
            jitter=retry.jitter,
            max_elapsed=retry.max_elapsed,
        )


class Step(BaseModel):
    """One step of a workflow; see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    action: str = Field(min_length=1)
    capability: str | None = None
    agent: str | None = None
    params: dict[str, Any] = {}
    depends_on: list[str] = []
    timeout: float = Field(default=5.0, gt=0)
    retry: RetryPolicy = RetryPolicy()

    @field_validator("retry", mode="before")
    @classmethod
    def _retry(cls, value: Any) -> Any:
        return RetryPolicy.from_retry(value) if isinstance(value, Retry) else value

    @model_validator(mode="after")
    def _check(self) -> Step:
        if "." in self.id:
            raise ValueError(f"step id {self.id!r} must not contain '.' (templates use dots)")
        if (self.capability is None) == (self.agent is None):
            raise ValueError(f"step {self.id!r} needs exactly one of capability or agent")
        return self


class Workflow(BaseModel):
    """A named DAG of steps; ``validate_graph`` raises ``InvalidWorkflow`` for a bad one."""

    model_config = ConfigDict(extra="forbid")

    name: str = "workflow"
    steps: list[Step] = []

    def validate_graph(self) -> None:
        """Duplicate ids, unknown dependencies, cycles and references to steps that are not
        dependencies are errors that name what is wrong."""
        ids = [s.id for s in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise InvalidWorkflow(
                f"workflow {self.name!r}: duplicate step ids {dupes}", context={"steps": dupes}
            )
        known = set(ids)
        for step in self.steps:
            unknown = [d for d in step.depends_on if d not in known]
            if unknown:
                raise InvalidWorkflow(
                    f"workflow {self.name!r}: step {step.id!r} depends on unknown steps {unknown}",
                    context={"step": step.id, "unknown": unknown},
                )
        deps = {s.id: s.depends_on for s in self.steps}
        cycle = _find_cycle(deps)
        if cycle:
            raise InvalidWorkflow(
                f"workflow {self.name!r} has a cycle: {' -> '.join(cycle)}",
                context={"cycle": cycle},
            )
        for step in self.steps:
            before = _ancestors(step.id, deps)
            for ref in _references(step.params):
                parts = ref.split(".")
                if parts[0] in ("workflow", "step", "idempotency_key") and ref not in _FIXED:
                    raise InvalidWorkflow(
                        f"workflow {self.name!r}, step {step.id!r}: unknown template '${ref}' "
                        "(known: $input..., $steps.<id>.result..., $workflow.id, $step.id, "
                        "$idempotency_key; write '$$' for a literal '$')",
                        context={"step": step.id, "template": f"${ref}"},
                    )
                if parts[0] != "steps":
                    continue
                if len(parts) < 3 or parts[2] != "result":
                    raise InvalidWorkflow(
                        f"workflow {self.name!r}, step {step.id!r}: template '${ref}' must read "
                        "'$steps.<id>.result[.path]'",
                        context={"step": step.id, "template": f"${ref}"},
                    )
                if parts[1] not in before:
                    raise InvalidWorkflow(
                        f"workflow {self.name!r}, step {step.id!r}: template '${ref}' reads step "
                        f"{parts[1]!r}, which is not among its dependencies",
                        context={"step": step.id, "template": f"${ref}"},
                    )

    def check_input(self, inputs: dict[str, Any]) -> None:
        """Every ``$input`` path of every step exists in ``inputs`` (else ``InvalidWorkflow``)."""
        for step in self.steps:
            for ref in _references(step.params):
                parts = ref.split(".")
                if parts[0] == "input":
                    _path(inputs, parts[1:], f"${ref}", f"step {step.id!r}: the input")

    def step(self, step_id: str) -> Step:
        """The step with id ``step_id``."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


def _find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """A cycle as a path ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in deps:
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0:
                state[node] = 1
                path.append(node)
            children = deps.get(node, [])
            if i < len(children):
                stack.append((node, i + 1))
                child = children[i]
                if state.get(child) == 1:
                    return [*path[path.index(child) :], child]
                if not state.get(child):
                    stack.append((child, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def _ancestors(step_id: str, deps: dict[str, list[str]]) -> set[str]:
    """Every step ``step_id`` depends on, directly or not (the graph has no cycle)."""
    seen: set[str] = set()
    todo = list(deps.get(step_id, []))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(deps.get(node, []))
    return seen


def _references(value: Any) -> list[str]:
    """The references (without ``$``) in a params template."""
    if isinstance(value, str):
        ref = _reference(value)
        return [ref] if ref is not None else []
    if isinstance(value, dict):
        return [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def _reference(value: str) -> str | None:
    if value.startswith("$") and not value.startswith("$$"):
        ref = value[1:]
        if ref.split(".", 1)[0] in _ROOTS:
            return ref
    return None


def ready_steps(workflow: Workflow, completed: set[str], started: set[str]) -> list[Step]:
    """The steps not yet started whose dependencies have all completed, in definition order."""
    return [
        s
        for s in workflow.steps
        if s.id not in started and s.id not in completed and set(s.depends_on) <= completed
    ]


def render(
    value: Any,
    inputs: dict[str, Any],
    results: dict[str, Any],
    *,
    workflow_id: str = "",
    step_id: str = "",
) -> Any:
    """``value`` with every reference replaced (see the module docstring)."""
    if isinstance(value, str):
        if value.startswith("$$"):
            return value[1:]
        ref = _reference(value)
        if ref is None:
            return value
        parts = ref.split(".")
        root = parts[0]
        if root == "input":
            return _path(inputs, parts[1:], value, "the input")
        if root == "steps":
            if len(parts) < 3 or parts[2] != "result" or parts[1] not in results:
                raise InvalidWorkflow(
                    f"step {step_id!r}, template {value!r}: no result of step {parts[1:2]} yet",
                    context={"step": step_id, "template": value},
                )
            return _path(results[parts[1]], parts[3:], value, f"the result of {parts[1]!r}")
        if ref == "workflow.id":
            return workflow_id
        if ref == "step.id":
            return step_id
        if ref == "idempotency_key":
            return f"{workflow_id}:{step_id}"
        raise InvalidWorkflow(
            f"step {step_id!r}: unknown template {value!r} (write '$' + value to keep it as text)",
            context={"step": step_id, "template": value},
        )
    if isinstance(value, dict):
        return {
            k: render(v, inputs, results, workflow_id=workflow_id, step_id=step_id)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [render(v, inputs, results, workflow_id=workflow_id, step_id=step_id) for v in value]
    return value


def _path(value: Any, parts: list[str], template: str, where: str) -> Any:
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise InvalidWorkflow(
                f"template {template!r}: {where} has no {part!r} (in {_short(value)})",
                context={"template": template, "missing": part},
            )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
