"""A steady load of orders on a running sales service, over HTTP: orders/s and latency.

    python -m benchmarks.sales_load [--url http://127.0.0.1:8001] [--orders 1000]
        [--concurrency 16]

Creates ``--orders`` leads first (their rate printed apart), then submits one order for each with
``--concurrency`` requests in flight (a closed loop: as fast as the service answers),
and prints the orders acknowledged per second with the p50 and p99 of the requests.
Start the service first, e.g. as ``make demo-distributed`` starts sales (all its roles:
``CHRONIK_RUN=http,projections,consumers,processes``), under a profiler to see where an
order's time goes (``benchmarks.profile_service``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx


async def _drive(
    client: httpx.AsyncClient, requests: list[tuple[str, dict[str, Any]]], concurrency: int
) -> tuple[list[str], list[float], float]:
    results: list[str] = [""] * len(requests)
    latencies: list[float] = []
    queue = iter(range(len(requests)))

    async def worker() -> None:
        for i in queue:
            path, body = requests[i]
            started = time.perf_counter()
            response = await client.post(path, json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code >= 300:
                raise RuntimeError(f"{path}: {response.status_code} {response.text}")
            results[i] = str(response.json().get("id", ""))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, latencies, time.perf_counter() - started


def _ms(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000


def _line(what: str, count: int, seconds: float, latencies: list[float]) -> str:
    return (
        f"{what}: {count} in {seconds:.1f} s: {count / seconds:.0f}/s, "
        f"p50 {_ms(latencies, 0.5):.0f} ms, p99 {_ms(latencies, 0.99):.0f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8001")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--prefix", default="", help="before /leads: '' for sales alone, /sales for the demo"
    )
    args = parser.parse_args()
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=args.url, limits=limits, timeout=120) as client:
        leads = [
            (f"{args.prefix}/leads", {"name": f"Lead {i}", "phone": "+33 1 23 45 67"})
            for i in range(args.orders)
        ]
        ids, lat, seconds = await _drive(client, leads, args.concurrency)
        print(_line("leads", len(ids), seconds, lat))
        orders = [
            (f"{args.prefix}/leads/{i}/orders", {"amount_cents": 1000, "currency": "EUR"})
            for i in ids
        ]
        _, lat, seconds = await _drive(client, orders, args.concurrency)
        print(_line("orders", len(orders), seconds, lat))


if __name__ == "__main__":
    asyncio.run(main())
