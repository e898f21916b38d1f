"""WorkflowSystem: the workflow layer's processes, as one subtree to put in your tree."""

from __future__ import annotations

from foundation.errors import InvalidArgument
from foundation.kernel.child_spec import ChildSpec
from foundation.kernel.supervisor import Supervisor
from foundation.workflows.coordinator import Coordinator
from foundation.workflows.process import COORDINATOR
from foundation.workflows.supervisor import WORKFLOW_SUPERVISOR, WorkflowSupervisor

__all__ = ["WorkflowSystem", "coordinator_key"]


def coordinator_key(name: str) -> str:
    """Where the coordinator registered as ``name`` keeps its state."""
    return "workflows/coordinator" if name == COORDINATOR else f"workflows/{name}"


class WorkflowSystem:
    """The WorkflowSupervisor and the Coordinator under a ``rest_for_one`` supervisor.

    Put it after the agents. ``rest_for_one``: a crashed coordinator is restarted alone (the
    workflows keep running and it reconciles with them); should the WorkflowSupervisor give up,
    the coordinator is restarted after it and starts every unfinished workflow again.
    """

    @staticmethod
    def child_specs(
        *,
        name: str = COORDINATOR,
        supervisor: str = WORKFLOW_SUPERVISOR,
        keep_finished: int = 1000,
        max_restarts: int = 10_000,
        max_seconds: float = 5.0,
    ) -> list[ChildSpec]:
        """One child spec: the subtree of the coordinator ``name`` (give it to ``start_link``)."""
        for what, value in (("name", name), ("supervisor", supervisor)):
            if not isinstance(value, str) or not value:
                raise InvalidArgument(f"WorkflowSystem: invalid {what} {value!r} (a non-empty str)")
        if (
            isinstance(keep_finished, bool)
            or not isinstance(keep_finished, int)
            or keep_finished < 0
        ):
            raise InvalidArgument(f"WorkflowSystem: invalid keep_finished {keep_finished!r}")
        coordinator: type[Coordinator] = Coordinator
        if (supervisor, keep_finished) != (Coordinator.supervisor, Coordinator.keep_finished):
            attrs = {"supervisor": supervisor, "keep_finished": keep_finished}
            coordinator = type("Coordinator", (Coordinator,), attrs)
        children = [
            WorkflowSupervisor.child_spec(
                name=supervisor, max_restarts=max_restarts, max_seconds=max_seconds
            ),
            coordinator.child_spec(key=coordinator_key(name), name=name, id=name),
        ]
        return [
            Supervisor.child_spec(
                children,
                id=f"workflows:{name}",
                strategy="rest_for_one",
                max_restarts=max_restarts,
                max_seconds=max_seconds,
            )
        ]
