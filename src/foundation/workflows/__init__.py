"""Durable workflows: a DAG of agent actions, one supervised persistent process per workflow.

``start_workflow(workflow, input)`` validates and starts one; ``await_workflow``,
``workflow_status``, ``cancel_workflow`` and ``list_workflows`` follow it. Put
``WorkflowSystem.child_specs()`` in your tree (after the agents). See ``docs/workflows.md``.
"""

from foundation.workflows.api import await_workflow as await_workflow
from foundation.workflows.api import cancel_workflow as cancel_workflow
from foundation.workflows.api import list_workflows as list_workflows
from foundation.workflows.api import start_workflow as start_workflow
from foundation.workflows.api import workflow_status as workflow_status
from foundation.workflows.coordinator import Coordinator as Coordinator
from foundation.workflows.coordinator import WorkflowEntry as WorkflowEntry
from foundation.workflows.definition import RetryPolicy as RetryPolicy
from foundation.workflows.definition import Step as Step
from foundation.workflows.definition import Workflow as Workflow
from foundation.workflows.process import COORDINATOR as COORDINATOR
from foundation.workflows.process import StepState as StepState
from foundation.workflows.process import WorkflowProcess as WorkflowProcess
from foundation.workflows.process import WorkflowState as WorkflowState
from foundation.workflows.supervisor import WorkflowSupervisor as WorkflowSupervisor
from foundation.workflows.system import WorkflowSystem as WorkflowSystem

__all__ = [
    "COORDINATOR",
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
