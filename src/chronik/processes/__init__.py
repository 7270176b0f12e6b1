"""Long-running processes: sagas and process managers, durable timeouts, commands."""

from chronik.processes.admin import ProcessesAdmin, ProcessStep, RawStreamReader
from chronik.processes.clock import (
    Clock,
    FileClock,
    SystemClock,
    TurnableClock,
    VirtualClock,
    parse_duration,
)
from chronik.processes.index import InstanceView, ProcessIndex, process_index
from chronik.processes.process import (
    FailurePolicy,
    ProcessManager,
    ProcessState,
    ProcessStepped,
    Step,
    on_timeout,
    process_stream,
    starts,
    when,
)
from chronik.processes.runner import CommandHandler, Processes

__all__ = [
    "Clock",
    "CommandHandler",
    "FailurePolicy",
    "FileClock",
    "InstanceView",
    "ProcessIndex",
    "ProcessManager",
    "ProcessState",
    "ProcessStep",
    "ProcessStepped",
    "Processes",
    "ProcessesAdmin",
    "RawStreamReader",
    "Step",
    "SystemClock",
    "TurnableClock",
    "VirtualClock",
    "on_timeout",
    "parse_duration",
    "process_index",
    "process_stream",
    "starts",
    "when",
]
