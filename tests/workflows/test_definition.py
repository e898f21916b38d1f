"""Workflow definitions: a bad one is a clear error before anything starts; templates render."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

import pytest
from pydantic import ValidationError as PydanticValidationError

from foundation import Runtime
from foundation.errors import InvalidArgument, InvalidWorkflow, UnknownCapability, ValidationError
from foundation.services.retry import Retry
from foundation.workflows import RetryPolicy, Step, Workflow, list_workflows, start_workflow
from foundation.workflows.definition import render

from ._support import five_steps, start_system

STEP: Final = MappingProxyType({"capability": "fetch", "action": "work"})


def test_a_valid_workflow_validates_on_its_own() -> None:
    wf = Workflow.model_validate(five_steps())
    wf.validate_graph()
    wf.check_input({"x": 1})
    assert [s.id for s in wf.steps] == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [{**STEP, "id": "a", "depends_on": ["zz"]}],
            r"step 'a' depends on unknown steps \['zz'\]",
        ),
        ([{**STEP, "id": "a"}, {**STEP, "id": "a"}], r"duplicate step ids \['a'\]"),
        ([{**STEP, "id": "a", "depends_on": ["a"]}], "has a cycle: a -> a"),
        (
            [
                {**STEP, "id": "a", "depends_on": ["c"]},
                {**STEP, "id": "b", "depends_on": ["a"]},
                {**STEP, "id": "c", "depends_on": ["b"]},
                {**STEP, "id": "d", "depends_on": ["a"]},
            ],
            "has a cycle: a -> c -> b -> a",
        ),
        (
            [{**STEP, "id": "a"}, {**STEP, "id": "b", "params": {"v": "$steps.a.result"}}],
            "reads step 'a', which is not among its dependencies",
        ),
        ([{**STEP, "id": "a", "params": {"v": "$steps.a"}}], r"must read '\$steps.<id>.result"),
        ([{**STEP, "id": "a", "params": {"v": ["$workflow.name"]}}], "unknown template"),
    ],
)
def test_graph_errors_name_what_is_wrong(steps: list[dict[str, Any]], message: str) -> None:
    wf = Workflow.model_validate({"name": "w", "steps": steps})
    with pytest.raises(InvalidWorkflow, match=message):
        wf.validate_graph()


def test_a_reference_to_an_indirect_dependency_is_allowed() -> None:
    wf = Workflow.model_validate(
        {
            "steps": [
                {**STEP, "id": "a"},
                {**STEP, "id": "b", "depends_on": ["a"]},
                {**STEP, "id": "c", "depends_on": ["b"], "params": {"v": "$steps.a.result.x"}},
            ]
        }
    )
    wf.validate_graph()


def test_a_step_needs_exactly_one_target_and_a_plain_id() -> None:
    with pytest.raises(PydanticValidationError, match="exactly one of capability or agent"):
        Step.model_validate({"id": "a", "action": "x"})
    with pytest.raises(PydanticValidationError, match="exactly one of capability or agent"):
        Step.model_validate({"id": "a", "action": "x", "capability": "c", "agent": "g"})
    with pytest.raises(PydanticValidationError, match=r"must not contain '\.'"):
        Step.model_validate({"id": "a.b", "action": "x", "capability": "c"})
    with pytest.raises(PydanticValidationError, match="depend"):
        Step.model_validate({"id": "a", "action": "x", "capability": "c", "depend": ["b"]})


def test_templates_render_inputs_results_and_keys_and_keep_other_values() -> None:
    params = {
        "a": "$input.user.name",
        "b": ["$steps.s1.result.items.1", 7, {"c": "$steps.s1.result"}],
        "k": "$idempotency_key",
        "w": "$workflow.id",
        "s": "$step.id",
        "lit": "$$input.x",
        "money": "$5",
        "all": "$input",
    }
    inputs = {"user": {"name": "ada"}}
    results = {"s1": {"items": ["x", "y"]}}
    assert render(params, inputs, results, workflow_id="wf1", step_id="s2") == {
        "a": "ada",
        "b": ["y", 7, {"c": {"items": ["x", "y"]}}],
        "k": "wf1:s2",
        "w": "wf1",
        "s": "s2",
        "lit": "$input.x",
        "money": "$5",
        "all": inputs,
    }
    with pytest.raises(InvalidWorkflow, match=r"the result of 's1' has no '5'"):
        render({"v": "$steps.s1.result.items.5"}, inputs, results)


def test_input_paths_are_checked_against_the_input() -> None:
    wf = Workflow.model_validate(five_steps())
    with pytest.raises(InvalidWorkflow, match=r"'\$input.x': step 'a': the input has no 'x'"):
        wf.check_input({"y": 1})


def test_a_retry_policy_maps_to_and_from_retry() -> None:
    policy = RetryPolicy(max_attempts=3, backoff=0.1, multiplier=3, max_backoff=1.0)
    retry = policy.to_retry()
    assert retry.max_attempts == 3
    assert [retry.delay(n) for n in (1, 2, 3)] == pytest.approx([0.1, 0.3, 0.9])
    assert policy.to_retry(max_attempts=1).max_attempts == 1
    assert RetryPolicy.from_retry(retry) == policy.model_copy(update={"max_elapsed": None})
    step = Step(id="s", action="x", capability="c", retry=Retry.fixed(0.2, max_attempts=4))
    assert step.retry.to_retry().delay(3) == pytest.approx(0.2)
    assert step.retry.max_attempts == 4
    with pytest.raises(PydanticValidationError, match="linear Retry cannot be stored"):
        Step(id="s", action="x", capability="c", retry=Retry.linear())
    with pytest.raises(PydanticValidationError, match="retry_on"):
        Step(id="s", action="x", capability="c", retry=Retry.fixed(retry_on=(OSError,)))


async def test_start_workflow_rejects_bad_definitions_and_starts_nothing(
    runtime: Runtime,
) -> None:
    await start_system(runtime)
    with pytest.raises(InvalidWorkflow, match=r"unknown steps \['zz'\]"):
        await start_workflow({"steps": [{**STEP, "id": "a", "depends_on": ["zz"]}]})
    with pytest.raises(InvalidWorkflow, match="cycle: a -> b -> a"):
        await start_workflow(
            {
                "steps": [
                    {**STEP, "id": "a", "depends_on": ["b"]},
                    {**STEP, "id": "b", "depends_on": ["a"]},
                ]
            }
        )
    with pytest.raises(UnknownCapability, match="step 'a': no agent offers 'teleport'"):
        await start_workflow({"steps": [{"id": "a", "capability": "teleport", "action": "x"}]})
    with pytest.raises(ValidationError, match="capability or agent"):
        await start_workflow({"steps": [{"id": "a", "action": "x"}]})
    with pytest.raises(InvalidWorkflow, match="the input has no 'x'"):
        await start_workflow(five_steps(), {"y": 1})
    with pytest.raises(InvalidArgument, match="input must be a dict"):
        await start_workflow(five_steps(), [1])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="invalid workflow id"):
        await start_workflow(five_steps(), {"x": 1}, workflow_id="a/b")
    with pytest.raises(InvalidArgument, match="invalid workflow status"):
        await list_workflows("done")
    assert await list_workflows() == {}
    assert await runtime.store.list("workflow/") == []
