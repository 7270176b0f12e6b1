"""Test support for chronik users: contract suites that adapters pass.

Importing its suites needs pytest: the ``testing`` extra (``pip install 'chronik[testing]'``).
Each suite is an abstract class of tests; an adapter's test module subclasses it and
provides its fixtures (see docs/testing.md). Given/when/then scenarios for domain code
are in ``chronik.testing.scenario``.
"""

from chronik.testing.broker_contract import BrokerContract, Received
from chronik.testing.eventstore_contract import DurableEventStoreContract, EventStoreContract
from chronik.testing.messages_contract import MessageStorageContract, SharedMessageStorageContract
from chronik.testing.projection_contract import InlineProjectionContract, ProjectionContract

__all__ = [
    "BrokerContract",
    "DurableEventStoreContract",
    "EventStoreContract",
    "InlineProjectionContract",
    "MessageStorageContract",
    "ProjectionContract",
    "Received",
    "SharedMessageStorageContract",
]
