"""A consumer's life on one store object: one of a name at a time, and gone when stopped.

Two consumers of one name on one store object would both mark the inbox on each
append; the second mark would fail and roll the effect back while the message is
acknowledged: effects lost. The consumer refuses the second one, and a stopped
consumer leaves nothing behind, so a restart in the same process works.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from messaging_harness import ConsumingContext, Producer, Seen, unique_context

from chronik.errors import ConfigurationError
from chronik.messaging.port import Delivery


async def test_a_second_consumer_of_one_name_on_one_store_is_refused() -> None:
    producer = await Producer.open("memory://", unique_context())
    first = await ConsumingContext.open("memory://", producer)
    second = ConsumingContext(
        first.store, producer.language, producer.message, first.name, storage=first.storage
    )
    try:
        await first.consumer.setup()
        with pytest.raises(ConfigurationError, match=f"consumer {first.name!r} is already"):
            await second.consumer.setup()
    finally:
        await first.store.close()
        await producer.store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_consumer_restarted_in_the_same_process_keeps_every_effect(
    kind: str, tmp_path: Path
) -> None:
    producer = await Producer.open("memory://", unique_context())
    url = "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'consumer.db'}"
    first = await ConsumingContext.open(url, producer)
    try:
        await first.consumer.setup()
        await producer.write(["account-000"], 4, batch=1, writers=1)
        rows = await producer.outbox.storage.pending(100)
        deliveries = [Delivery(r.message_id, r.type, r.body, 1) for r in rows]
        await first.consumer.deliver(deliveries[0])
        await first.consumer.stop()

        again = ConsumingContext(
            first.store, producer.language, producer.message, first.name, storage=first.storage
        )
        await again.consumer.setup()
        for delivery in deliveries:
            await again.consumer.deliver(delivery)
        seen = [r.event for r in await first.seen() if isinstance(r.event, Seen)]
        assert [(s.source_stream, s.seq) for s in seen] == [
            ("account-000", n) for n in (1, 2, 3, 4)
        ]
        assert again.consumer.handled == 3, "the first message was handled before the restart"
    finally:
        await first.store.close()
        await producer.store.close()
