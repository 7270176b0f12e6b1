"""The service runtime: settings, assembly, health, shutdown, observability.

A service is described by ``ServiceSpec``s (one per bounded context) and run by a
``Runtime``, the composition root: it opens the one database and broker its settings
name and wires every role. ``chronik serve`` (``chronik.http.serve``) runs one.
Its background work runs as ``chronik.worker`` workers: ``Lease`` is what each holds
while it leads, ``WorkerStatus`` what readiness shows of it (docs/workers.md).
"""

from chronik.instruments import NO_INSTRUMENTS, Instruments, NoInstruments
from chronik.runtime.observability import Metrics, configure_logging
from chronik.runtime.service import ConsumerSpec, Runtime, ServiceSpec, Worker
from chronik.runtime.settings import ROLES, LoadedSettings, Settings, load_settings, opened_from
from chronik.runtime.specs import load_specs
from chronik.worker import Lease, WorkerStatus

__all__ = [
    "NO_INSTRUMENTS",
    "ROLES",
    "ConsumerSpec",
    "Instruments",
    "Lease",
    "LoadedSettings",
    "Metrics",
    "NoInstruments",
    "Runtime",
    "ServiceSpec",
    "Settings",
    "Worker",
    "WorkerStatus",
    "configure_logging",
    "load_settings",
    "load_specs",
    "opened_from",
]
