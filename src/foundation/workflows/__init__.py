"""Durable workflows: a DAG of agent actions, one supervised persistent process per workflow.

``start_workflow(workflow, input)`` validates and starts one; ``await_workflow``,
``workflow_status``, ``cancel_workflow`` and ``list_workflows`` follow it. Put
``WorkflowSystem.child_specs()`` in your tree (after the agents).
"""

from foundation.workflows.coordinator import Coordinator as Coordinator
from foundation.workflows.coordinator import WorkflowEntry as WorkflowEntry
from foundation.workflows.coordinator import WorkflowSupervisor as WorkflowSupervisor
from foundation.workflows.coordinator import WorkflowSystem as WorkflowSystem
from foundation.workflows.coordinator import await_workflow as await_workflow
from foundation.workflows.coordinator import cancel_workflow as cancel_workflow
from foundation.workflows.coordinator import list_workflows as list_workflows
from foundation.workflows.coordinator import start_workflow as start_workflow
from foundation.workflows.coordinator import workflow_status as workflow_status
from foundation.workflows.definition import RetryPolicy as RetryPolicy
from foundation.workflows.definition import Step as Step
from foundation.workflows.definition import Workflow as Workflow
from foundation.workflows.process import StepState as StepState
from foundation.workflows.process import WorkflowProcess as WorkflowProcess
from foundation.workflows.process import WorkflowState as WorkflowState

__all__ = [
    "Coordinator",
    "RetryPolicy",
    "Step",
    "StepState",
    "Workflow",
    "WorkflowEntry",
    "WorkflowProcess",
    "WorkflowState",
    "WorkflowSupervisor",
    "WorkflowSystem",
    "await_workflow",
    "cancel_workflow",
    "list_workflows",
    "start_workflow",
    "workflow_status",
]
