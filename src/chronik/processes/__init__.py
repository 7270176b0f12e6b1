"""Long-running processes: sagas and process managers, durable timeouts, commands."""

from chronik.processes.clock import Clock, FileClock, SystemClock, VirtualClock
from chronik.processes.process import (
    FailurePolicy,
    ProcessManager,
    ProcessState,
    ProcessStepped,
    Step,
    on_timeout,
    starts,
    when,
)
from chronik.processes.runner import (
    CommandHandler,
    InstanceView,
    Processes,
    ProcessIndex,
    process_index,
)

__all__ = [
    "Clock",
    "CommandHandler",
    "FailurePolicy",
    "FileClock",
    "InstanceView",
    "ProcessIndex",
    "ProcessManager",
    "ProcessState",
    "ProcessStepped",
    "Processes",
    "Step",
    "SystemClock",
    "VirtualClock",
    "on_timeout",
    "process_index",
    "starts",
    "when",
]
