"""AgentSupervisor: starts agents by id, so the same id always gets back its own state.

``AgentSupervisor.child_specs()`` gives the agent registry and the supervisor, in the order to
start them; ``await start_agent(TaskAgent, "worker-1", args)`` starts the agent under the
supervisor (or returns the running one), its state stored under ``agent/<Type>/<id>``.
"""

from __future__ import annotations

from typing import Any

from foundation.agents.agent import AGENT_REGISTRY, Agent
from foundation.errors import AlreadyStarted, ChildNotFound, InvalidArgument, NoProcess
from foundation.kernel.child_spec import ChildSpec
from foundation.kernel.context import current_runtime
from foundation.kernel.dynamic_supervisor import DynamicSupervisor
from foundation.kernel.pid import Pid
from foundation.kernel.registry import Registry

__all__ = ["AGENT_SUPERVISOR", "AgentSupervisor", "agent_key", "start_agent", "stop_agent"]

AGENT_SUPERVISOR = "foundation.agents"
"""The registered name of the default agent supervisor."""


class AgentSupervisor(DynamicSupervisor):
    """A dynamic supervisor of agents (permanent children, restarted from their stored state)."""

    @staticmethod
    def child_specs(
        *,
        name: str = AGENT_SUPERVISOR,
        registry: str = AGENT_REGISTRY,
        max_restarts: int = 100,
        max_seconds: float = 5.0,
    ) -> list[ChildSpec]:
        """The agent registry, then the supervisor: put both, in order, under your tree."""
        return [
            Registry.child_spec(name=registry, keys="unique", index=["capabilities", "health"]),
            AgentSupervisor.child_spec(
                name=name, max_restarts=max_restarts, max_seconds=max_seconds
            ),
        ]


def agent_key(cls: type[Agent], agent_id: str) -> str:
    """Where an agent's state is stored: one key per agent type and id."""
    return f"agent/{cls.__name__}/{agent_id}"


async def start_agent(
    cls: type[Agent],
    agent_id: str,
    args: Any = None,
    *,
    supervisor: Any = AGENT_SUPERVISOR,
    timeout: float | None = 5.0,
) -> Pid:
    """Start agent ``agent_id`` of type ``cls`` (registered under its id), or return it if running.

    A restarted or re-started agent comes back with its stored state; ``args`` only shapes the
    state of an id seen for the first time.
    """
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise InvalidArgument(f"start_agent needs an Agent subclass, not {cls!r}")
    if not isinstance(agent_id, str) or not agent_id:
        raise InvalidArgument(f"invalid agent id {agent_id!r}: a non-empty str")
    rt = current_runtime()
    running = rt.whereis(agent_id)
    if running is not None:
        return running
    spec = cls.child_spec(
        args, key=agent_key(cls, agent_id), name=agent_id, id=agent_id, timeout=timeout
    )
    try:
        pid = await DynamicSupervisor.start_child(supervisor, spec)
    except AlreadyStarted as exc:
        return exc.pid  # type: ignore[return-value]
    assert pid is not None
    return pid


async def stop_agent(agent_id: str, *, supervisor: Any = AGENT_SUPERVISOR) -> None:
    """Stop a running agent in order; its stored state stays (``start_agent`` brings it back)."""
    pid = current_runtime().whereis(agent_id)
    if pid is None:
        raise NoProcess(f"stop_agent: no agent {agent_id!r} is running")
    try:
        await DynamicSupervisor.terminate_child(supervisor, pid)
    except ChildNotFound as exc:
        raise InvalidArgument(
            f"stop_agent: {agent_id!r} is not a child of the agent supervisor {supervisor!r}"
        ) from exc
