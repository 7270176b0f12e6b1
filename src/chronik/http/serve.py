"""Serving a runtime over HTTP, with the shutdown Kubernetes expects.

SIGTERM: readiness turns 503 at once and the server keeps serving for
``shutdown_drain_delay`` (so endpoints stop routing here), then stops accepting; in-flight
requests finish; workers finish their current batch and store their checkpoints; the
process exits within ``shutdown_grace``. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from types import FrameType

import uvicorn

from chronik.http.app import create_app
from chronik.runtime.service import Runtime, ServiceSpec
from chronik.runtime.settings import Settings

__all__ = ["serve"]

log = logging.getLogger(__name__)


async def serve(
    settings: Settings, specs: Sequence[ServiceSpec], *, stopping: asyncio.Event | None = None
) -> None:
    """Run the service ``specs`` describe with ``settings`` until SIGTERM (or SIGINT).

    ``stopping``, when given, is set at the first signal, when the drain begins; setting
    it stops the server as that signal would (``chronik demo`` stops its seeding on it,
    and sets it from its own signal handlers when a signal comes before the server runs).
    """
    runtime = Runtime(settings, specs)
    await runtime.start()
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    exit_by: list[float] = []

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if runtime.shutting_down:  # a second signal: stop now
                super().handle_exit(sig, frame)
                return
            runtime.shutting_down = True
            if stopping is not None:
                loop.call_soon_threadsafe(stopping.set)
            exit_by.append(time.monotonic() + settings.shutdown_grace)
            log.info(
                "signal: not ready, draining",
                extra={"signal": sig, "drain_seconds": settings.shutdown_drain_delay},
            )
            loop.call_soon_threadsafe(
                loop.call_later, settings.shutdown_drain_delay, self._stop_accepting
            )

        def _stop_accepting(self) -> None:
            self.should_exit = True

    drain_budget = max(1.0, settings.shutdown_grace - settings.shutdown_drain_delay - 3.0)
    config = uvicorn.Config(
        create_app(runtime),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        lifespan="off",
        timeout_graceful_shutdown=int(drain_budget),
        access_log=False,
    )
    server = Server(config)

    async def stop_when_asked(asked: asyncio.Event) -> None:
        await asked.wait()
        if not runtime.shutting_down:  # set by someone else than a signal: act as one
            server.handle_exit(signal.SIGTERM, None)

    watcher = asyncio.create_task(stop_when_asked(stopping)) if stopping is not None else None
    log.info(
        "serving",
        extra={
            "contexts": [s.name for s in specs],
            "url": f"http://{settings.http_host}:{settings.http_port}{settings.http_root_path}",
            "run": settings.run,
        },
    )
    try:
        await server.serve()
    finally:
        if watcher is not None:
            watcher.cancel()
        left = (exit_by[0] - time.monotonic()) if exit_by else settings.shutdown_grace
        try:
            await asyncio.wait_for(runtime.stop(), max(0.5, left))
        except TimeoutError:
            log.warning(
                "workers did not stop within the grace period",
                extra={"grace_seconds": settings.shutdown_grace},
            )
        log.info("stopped", extra={"seconds": round(time.monotonic() - started, 3)})
