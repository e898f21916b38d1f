"""Agents: persistent servers with validated actions, found by capability and health.

``Agent`` (state model, ``@action`` methods, hooks, signals), ``run`` an action, ``find_agents``,
``AgentSupervisor`` with ``start_agent``/``stop_agent`` by id, and the ready-made ``TaskAgent``
(a durable task queue) and ``MonitorAgent`` (health checks on the scheduler).
"""

from foundation.agents.action import ActionSpec as ActionSpec
from foundation.agents.action import action as action
from foundation.agents.agent import AGENT_REGISTRY as AGENT_REGISTRY
from foundation.agents.agent import Agent as Agent
from foundation.agents.agent import AgentInfo as AgentInfo
from foundation.agents.agent import find_agents as find_agents
from foundation.agents.agent import run as run
from foundation.agents.agent import set_health as set_health
from foundation.agents.monitor_agent import MonitorAgent as MonitorAgent
from foundation.agents.supervisor import AGENT_SUPERVISOR as AGENT_SUPERVISOR
from foundation.agents.supervisor import AgentSupervisor as AgentSupervisor
from foundation.agents.supervisor import agent_key as agent_key
from foundation.agents.supervisor import start_agent as start_agent
from foundation.agents.supervisor import stop_agent as stop_agent
from foundation.agents.task_agent import TaskAgent as TaskAgent
from foundation.agents.task_agent import TaskOutcome as TaskOutcome
from foundation.agents.task_agent import TaskRecord as TaskRecord
from foundation.agents.task_agent import TaskStats as TaskStats

__all__ = [
    "AGENT_REGISTRY",
    "AGENT_SUPERVISOR",
    "ActionSpec",
    "Agent",
    "AgentInfo",
    "AgentSupervisor",
    "MonitorAgent",
    "TaskAgent",
    "TaskOutcome",
    "TaskRecord",
    "TaskStats",
    "action",
    "agent_key",
    "find_agents",
    "run",
    "set_health",
    "start_agent",
    "stop_agent",
]
