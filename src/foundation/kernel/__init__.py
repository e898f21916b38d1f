"""The kernel: Erlang/OTP's process model on asyncio.

Processes with mailboxes, links and monitors; GenServer; Supervisor, DynamicSupervisor and
TaskSupervisor; Registry; the runtime and its clock. It imports nothing above itself.
"""

from foundation.kernel.api import current_pid as current_pid
from foundation.kernel.api import demonitor as demonitor
from foundation.kernel.api import exit as exit
from foundation.kernel.api import is_alive as is_alive
from foundation.kernel.api import link as link
from foundation.kernel.api import monitor as monitor
from foundation.kernel.api import receive as receive
from foundation.kernel.api import register as register
from foundation.kernel.api import send as send
from foundation.kernel.api import spawn as spawn
from foundation.kernel.api import spawn_link as spawn_link
from foundation.kernel.api import unlink as unlink
from foundation.kernel.api import unregister as unregister
from foundation.kernel.api import wait_exit as wait_exit
from foundation.kernel.api import whereis as whereis
from foundation.kernel.child_spec import ChildInfo as ChildInfo
from foundation.kernel.child_spec import ChildSpec as ChildSpec
from foundation.kernel.clock import Clock as Clock
from foundation.kernel.clock import RealClock as RealClock
from foundation.kernel.dynamic_supervisor import DynamicSupervisor as DynamicSupervisor
from foundation.kernel.gen_server import GenServer as GenServer
from foundation.kernel.gen_server import call as call
from foundation.kernel.gen_server import cast as cast
from foundation.kernel.gen_server import reply as reply
from foundation.kernel.main import run as run
from foundation.kernel.messages import Continue as Continue
from foundation.kernel.messages import Down as Down
from foundation.kernel.messages import Exit as Exit
from foundation.kernel.messages import NoReply as NoReply
from foundation.kernel.messages import Reply as Reply
from foundation.kernel.messages import Stop as Stop
from foundation.kernel.pid import Pid as Pid
from foundation.kernel.pid import Ref as Ref
from foundation.kernel.process import From as From
from foundation.kernel.process import ProcessInfo as ProcessInfo
from foundation.kernel.registry import Registry as Registry
from foundation.kernel.runtime import Runtime as Runtime
from foundation.kernel.supervisor import Supervisor as Supervisor
from foundation.kernel.task_supervisor import Task as Task
from foundation.kernel.task_supervisor import TaskSupervisor as TaskSupervisor
from foundation.kernel.timers import TimerRef as TimerRef
from foundation.kernel.timers import cancel_timer as cancel_timer
from foundation.kernel.timers import send_after as send_after

__all__ = [
    "ChildInfo",
    "ChildSpec",
    "Clock",
    "Continue",
    "Down",
    "DynamicSupervisor",
    "Exit",
    "From",
    "GenServer",
    "NoReply",
    "Pid",
    "ProcessInfo",
    "RealClock",
    "Ref",
    "Registry",
    "Reply",
    "Runtime",
    "Stop",
    "Supervisor",
    "Task",
    "TaskSupervisor",
    "TimerRef",
    "call",
    "cancel_timer",
    "cast",
    "current_pid",
    "demonitor",
    "exit",
    "is_alive",
    "link",
    "monitor",
    "receive",
    "register",
    "reply",
    "run",
    "send",
    "send_after",
    "spawn",
    "spawn_link",
    "unlink",
    "unregister",
    "wait_exit",
    "whereis",
]
