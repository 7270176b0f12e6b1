"""Run ``chronik serve`` under cProfile and print where its CPU went, by role, at the end.

    CHRONIK_APP=sales:spec CHRONIK_EVENT_STORE_URL=... CHRONIK_BROKER_URL=... \\
        CHRONIK_RUN=http,projections,consumers,processes \\
        python -m benchmarks.profile_service OUT.prof

Configured as ``chronik serve`` is (environment variables only); stop it with SIGTERM
(or Ctrl-C): the service shuts down as usual, then the profile is written to OUT.prof
and summarised: the cumulative time of each role's entry points (HTTP requests,
projection pages, process followers, consumers, relay) as a share of the profiled total.
Drive it with ``python -m benchmarks.sales_load``. Times are the process's CPU time;
cProfile slows every Python call: read the shares, not the absolute times.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time

#: The roles' entry points, as (file suffix, function name): their cumulative times
#: overlap nothing else of the same role (a page, a request, a message).
ROLES: dict[str, list[tuple[str, str]]] = {
    "HTTP (a request through the ASGI app)": [("fastapi/applications.py", "__call__")],
    "the command itself (load, decide, append)": [("http/app.py", "run_command")],
    "append (store, hooks, commit)": [("eventstore/base.py", "append")],
    "projections (a page: read, decode, apply, commit)": [("projections/engine.py", "_live_step")],
    "process followers (read, handle, advance)": [("processes/runner.py", "_follow")],
    "consumers (a message)": [("messaging/consumer.py", "_handle")],
    "relay (a batch)": [("messaging/relay.py", "step")],
}


def summarise(path: str, top: int = 25) -> None:
    stats = pstats.Stats(path)
    raw = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"profiled CPU time: {total:.1f} s")
    for role, entries in ROLES.items():
        seconds = sum(
            ct
            for (file, _, name), (_, _, _, ct, _) in raw.items()
            for suffix, wanted in entries
            if file.endswith(suffix) and name == wanted
        )
        print(f"  {role}: {seconds:.2f} s, {100 * seconds / total:.0f}%")
    print()
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    from chronik.cli import main as chronik

    sys.argv = ["chronik", "serve"]
    # CPU time, not wall time: on a shared machine a call that was descheduled would
    # otherwise carry the time other processes ran.
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        chronik()
    except SystemExit:
        pass
    finally:
        profile.disable()
        profile.dump_stats(out)
        summarise(out)


if __name__ == "__main__":
    main()
