"""Workflow definitions: a DAG of steps, validated before anything starts.

A ``Step`` targets an agent by ``capability`` (any healthy agent offering it) or by ``agent``
id, runs one ``action`` with ``params``, after the steps in ``depends_on``, within ``timeout``
seconds per attempt, retried by its ``retry`` policy when the error is retryable. Params are
templates: a string ``"$input.a.b"`` is replaced by that path of the workflow input and
``"$steps.fetch.result.x"`` by that path of step ``fetch``'s result, anywhere in nested dicts
and lists; other values are kept as they are.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from foundation.errors import InvalidWorkflow

__all__ = [
    "RetryPolicy",
    "Step",
    "Workflow",
    "ready_steps",
    "render",
]


class RetryPolicy(BaseModel):
    """How a step is retried: attempts, first backoff and its growth (runtime-clock seconds)."""

    max_attempts: int = Field(default=10, ge=1)
    backoff: float = Field(default=0.05, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_backoff: float = Field(default=2.0, ge=0)

    def delay(self, attempt: int) -> float:
        """The wait before attempt ``attempt + 1`` (``attempt`` >= 1)."""
        return float(min(self.backoff * self.multiplier ** (attempt - 1), self.max_backoff))


class Step(BaseModel):
    """One step of a workflow; see the module docstring."""

    id: str = Field(min_length=1)
    action: str = Field(min_length=1)
    capability: str | None = None
    agent: str | None = None
    params: dict[str, Any] = {}
    depends_on: list[str] = []
    timeout: float = Field(default=5.0, gt=0)
    retry: RetryPolicy = RetryPolicy()

    @model_validator(mode="after")
    def _one_target(self) -> Step:
        if (self.capability is None) == (self.agent is None):
            raise ValueError(f"step {self.id!r} needs exactly one of capability or agent")
        return self


class Workflow(BaseModel):
    """A named DAG of steps; ``validate_graph`` raises ``InvalidWorkflow`` for a bad one."""

    name: str = "workflow"
    steps: list[Step] = []

    def validate_graph(self) -> None:
        """Duplicate ids, unknown dependencies and cycles are errors that name what is wrong."""
        ids = [s.id for s in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise InvalidWorkflow(f"workflow {self.name!r}: duplicate step ids {dupes}")
        known = set(ids)
        for step in self.steps:
            unknown = [d for d in step.depends_on if d not in known]
            if unknown:
                raise InvalidWorkflow(
                    f"workflow {self.name!r}: step {step.id!r} depends on unknown steps {unknown}",
                    context={"step": step.id, "unknown": unknown},
                )
        cycle = _find_cycle({s.id: s.depends_on for s in self.steps})
        if cycle:
            raise InvalidWorkflow(
                f"workflow {self.name!r} has a cycle: {' -> '.join(cycle)}",
                context={"cycle": cycle},
            )

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


def ready_steps(workflow: Workflow, completed: set[str], started: set[str]) -> list[Step]:
    """The steps not yet started whose dependencies have all completed, in definition order."""
    return [
        s
        for s in workflow.steps
        if s.id not in started and s.id not in completed and set(s.depends_on) <= completed
    ]


def render(value: Any, inputs: dict[str, Any], results: dict[str, Any]) -> Any:
    """``value`` with every ``$input...`` and ``$steps.<id>.result...`` string replaced."""
    if isinstance(value, str) and value.startswith("$"):
        parts = value[1:].split(".")
        if parts[0] == "input":
            return _path(inputs, parts[1:], value)
        if parts[0] == "steps" and len(parts) >= 3 and parts[2] == "result":
            if parts[1] not in results:
                raise InvalidWorkflow(f"template {value!r}: step {parts[1]!r} has no result yet")
            return _path(results[parts[1]], parts[3:], value)
        return value
    if isinstance(value, dict):
        return {k: render(v, inputs, results) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, inputs, results) for v in value]
    return value


def _path(value: Any, parts: list[str], template: str) -> Any:
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise InvalidWorkflow(f"template {template!r}: no {part!r} in {value!r}")
    return value
