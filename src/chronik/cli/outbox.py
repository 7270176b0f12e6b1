"""``chronik outbox`` and ``chronik dead-letters``, over ``MessagingAdmin``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import typer
from rich.markup import escape

from chronik.cli.run import DataDir, StoreUrl, age, console, opened, run, store_url_from, within
from chronik.messaging.admin import MessagingAdmin

__all__ = ["dead_letters_app", "outbox_app"]

outbox_app = typer.Typer(help="The transactional outbox.", no_args_is_help=True)
dead_letters_app = typer.Typer(help="Messages consumers gave up on.", no_args_is_help=True)


@contextlib.asynccontextmanager
async def _admin(url: str) -> AsyncIterator[MessagingAdmin]:
    async with opened(url) as database:
        storage = database.messages()
        await storage.setup()
        yield MessagingAdmin(storage)


@outbox_app.command("status")
def outbox_status(store_url: StoreUrl = None, data_dir: DataDir = None) -> None:
    """Messages waiting in the outbox, the oldest one's age, messages published."""
    url = store_url_from(store_url, data_dir)

    async def work() -> None:
        async with _admin(url) as admin:
            status = await admin.outbox_status()
            console.print(f"pending    {status.pending}")
            console.print(f"oldest     {age(status.oldest_pending)}")
            console.print(f"published  {status.published} (kept for an hour)")

    run(work)


@dead_letters_app.command("list")
def dead_letters_list(
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's.")] = None,
) -> None:
    """Dead letters with their errors."""
    url = store_url_from(store_url, data_dir)

    async def work() -> None:
        async with _admin(url) as admin:
            letters = await admin.dead_letters(consumer)
            if not letters:
                console.print("No dead letters.")
            for d in letters:
                console.print(
                    f"{escape(d.consumer)}  {d.message_id}  {d.type}  attempts {d.attempts}  "
                    f"{d.dead_at:%Y-%m-%d %H:%M:%S}\n  {escape(d.error)}"
                )

    run(work)


@dead_letters_app.command("redeliver")
def dead_letters_redeliver(
    consumer: str,
    message_id: str,
    store_url: StoreUrl = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Wait this long for the consumer.")] = 30,
) -> None:
    """Ask the running consumer to handle a dead letter again (after fixing its handler)."""
    url = store_url_from(store_url, data_dir)

    async def work() -> None:
        async with _admin(url) as admin:
            redelivery = await admin.redeliver(consumer, message_id)
            outcome = await within(timeout, redelivery.outcome())
            if outcome is None:
                console.print(
                    f"[yellow]Requested; {consumer!r} did not take it within {timeout:g} s.[/]"
                )
                return
            if outcome.failed_again is not None:
                console.print(f"Redelivered; it failed again: {escape(outcome.failed_again.error)}")
                raise typer.Exit(1)
            console.print(f"Redelivered: {consumer!r} handled {message_id}.")

    run(work)
