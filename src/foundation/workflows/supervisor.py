"""WorkflowSupervisor: the dynamic supervisor of the WorkflowProcesses of one coordinator."""

from __future__ import annotations

from foundation.kernel.dynamic_supervisor import DynamicSupervisor

__all__ = ["WORKFLOW_SUPERVISOR", "WorkflowSupervisor"]

WORKFLOW_SUPERVISOR = "foundation.workflows.supervisor"
"""The registered name of the default workflow supervisor."""


class WorkflowSupervisor(DynamicSupervisor):
    """Supervises one WorkflowProcess per workflow (transient: a finished one stays down)."""
