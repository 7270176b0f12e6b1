"""Render docs/benchmarks.md from the results document (benchmarks/results/latest.json)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from benchmarks.common import (
    ATTRIBUTION_SYSTEMS,
    BACKENDS,
    SIZES,
    SYSTEM_LABELS,
    SYSTEMS,
    WORKLOADS,
    Size,
    Workload,
)
from benchmarks.split_report import render_split

COMPARED = "chronik"  # the system compared with the others in the ratio columns
CEILING = "broker"  # the messaging workloads' reference: the broker's own client alone


def _rate(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator <= 0:
        return "n/a"
    return f"{numerator / denominator:.2f}x"


def _latency_ratio(numerator: float | None, denominator: float | None) -> str:
    """chronik p99 / other p99: below 1 means chronik is faster (lower is better)."""
    ratio = _ratio(numerator, denominator)
    return ratio if ratio == "n/a" else f"{ratio} (p99, < 1 better)"


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    line = line.replace("|", "\\|")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _workload_order(name: str) -> tuple[int, str]:
    names = list(WORKLOADS)
    return (names.index(name) if name in names else len(names), name)


def _backend_order(name: str) -> tuple[int, str]:
    return (BACKENDS.index(name) if name in BACKENDS else len(BACKENDS), name)


def sort_key(result: dict[str, Any]) -> tuple[Any, ...]:
    systems = list(SYSTEMS)
    system = str(result["system"])
    return (
        _workload_order(str(result["workload"])),
        _backend_order(str(result["backend"])),
        (systems.index(system) if system in systems else len(systems), system),
    )


_FIGURE = {"events": "events_per_s", "loads": "ops_per_s", "ms": "p99_ms"}
_UNIT_LABEL = {"events": "events/s", "loads": "loads/s", "ms": "ms (p99)"}


def _rate_of(result: dict[str, Any] | None, unit: str) -> float | None:
    """The row's figure: events/s, loads/s, or for a latency workload the p99 in ms."""
    if result is None or result.get("error"):
        return None
    value = result.get(_FIGURE.get(unit, "events_per_s"))
    return None if value is None else float(value)


def _p50_of(result: dict[str, Any] | None) -> float | None:
    if result is None or result.get("error"):
        return None
    value = result.get("p50_ms")
    return None if value is None else float(value)


def _figure_cell(result: dict[str, Any] | None, unit: str) -> str:
    if result is not None and result.get("timed_out"):
        return "timed out"
    value = _rate_of(result, unit)
    if unit != "ms":
        return _rate(value)
    if value is None:
        return "n/a"
    p50 = _p50_of(result)
    return _ms(value) if p50 is None else f"{_ms(value)} (p50 {_ms(p50)})"


def _mem_of(result: dict[str, Any] | None) -> float | None:
    if result is None or result.get("error"):
        return None
    value = result.get("peak_rss_mib")
    return None if value is None else float(value)


def _describe_size(size: Size) -> str:
    return ", ".join(f"{k}={v:,}" for k, v in dataclasses.asdict(size).items())


def _machine_lines(machine: dict[str, Any]) -> list[str]:
    pg = machine.get("postgres") or {}
    psycopg_info = machine.get("psycopg") or {}
    lines = [
        f"- Machine: `{machine.get('hostname')}`, {machine.get('cpu_model')} "
        f"x {machine.get('cpu_count')} CPUs, {machine.get('memory_mib')} MiB RAM, "
        f"{machine.get('platform')}",
        f"- Python {machine.get('python')}; SQLite {machine.get('sqlite_version')}; "
        f"PostgreSQL {pg.get('server_version', 'n/a')}; psycopg {psycopg_info.get('version')} "
        f"({psycopg_info.get('implementation')}); eventsourcing "
        f"{machine.get('eventsourcing_version')}; chronik "
        f"{machine.get('chronik_version') or '(not installed: the src/ checkout)'} "
        f"at commit {machine.get('chronik_commit') or 'n/a (none yet)'}"
        + (" with uncommitted changes" if machine.get("chronik_dirty") else ""),
    ]
    return lines


def _collect(
    workload: str,
    backend: str,
    by_system: dict[str, dict[str, Any]],
    notes: list[str],
    not_applicable: list[str],
    failures: list[str],
) -> None:
    """The row's notes, reasons for n/a and failures, for the lists under the tables."""
    for system in SYSTEMS:
        entry = by_system.get(system)
        if entry is None:
            continue
        where = f"- `{workload}` / {backend} / {system}:"
        if entry.get("error"):
            error = str(entry["error"])
            if entry.get("not_applicable"):
                reason = error.removeprefix("not applicable: ")
                not_applicable.append(f"{where} {_one_line(reason)}")
            else:
                failures.append(f"{where} {_one_line(error)}")
        elif entry.get("note"):
            notes.append(f"{where} {_one_line(str(entry['note']))}")


def _load_line(doc: dict[str, Any]) -> list[str]:
    load = doc.get("load_average") or {}
    start, end = load.get("start"), load.get("end")
    if not start or not end:
        return []

    def three(values: list[float]) -> str:
        return " / ".join(f"{v:.2f}" for v in values)

    wall = doc.get("wall_seconds")
    took = f"; the run took {float(wall) / 60:.1f} min" if wall is not None else ""
    return [
        f"- Load average of the machine (1 / 5 / 15 min): {three(start)} at the start of"
        f" the run, {three(end)} at its end{took}. Above the CPU count, other work shared"
        " the machine: read the absolute figures with that in mind."
    ]


def _store_target_cell(
    workload: Workload, backend: str, chronik: float | None, base: float | None
) -> str:
    """Issue 14's goal for chronik against the workload's fair raw baseline, met or not."""
    goal = workload.targets.get(backend)
    if goal is None:
        return ""
    label = f">= {goal:.1f}x {SYSTEM_LABELS.get(workload.baseline, workload.baseline)}"
    if chronik is None or base is None or base <= 0:
        return f"{label}: n/a"
    return f"{label}: {'met' if chronik / base >= goal else '**missed**'}"


def _store_row(workload: Workload, backend: str, by_system: dict[str, dict[str, Any]]) -> str:
    unit = workload.unit
    shown = ("chronik", "eventsourcing", "raw", "raw_decode")
    rates = {s: _rate_of(by_system.get(s), unit) for s in shown}
    mems = {s: _mem_of(by_system.get(s)) for s in ("chronik", "eventsourcing", "raw")}
    ratio = _latency_ratio if unit == "ms" else _ratio
    has_decode = "raw_decode" in workload.systems
    cells = [
        f"`{workload.name}`",
        backend,
        _UNIT_LABEL.get(unit, f"{unit}/s"),
        *(_figure_cell(by_system.get(s), unit) for s in shown[:3]),
        _figure_cell(by_system.get("raw_decode"), unit) if has_decode else "",
        ratio(rates[COMPARED], rates["eventsourcing"]),
        ratio(rates[COMPARED], rates["raw"]),
        ratio(rates[COMPARED], rates["raw_decode"]) if has_decode else "",
        _store_target_cell(workload, backend, rates[COMPARED], rates[workload.baseline]),
        *(_mib(m) for m in mems.values()),
        _ratio(mems[COMPARED], mems["eventsourcing"]),
    ]
    return "| " + " | ".join(cells) + " |"


def _fsync_off_row(workload: Workload, backend: str, by_system: dict[str, dict[str, Any]]) -> str:
    unit = workload.unit
    rates = {s: _rate_of(by_system.get(s), unit) for s in ("chronik", "raw")}
    cells = [
        f"`{workload.name}`",
        backend,
        _UNIT_LABEL.get(unit, f"{unit}/s"),
        _figure_cell(by_system.get("chronik"), unit),
        _figure_cell(by_system.get("raw"), unit),
        _ratio(rates["chronik"], rates["raw"]),
        _store_target_cell(workload, backend, rates["chronik"], rates["raw"]),
        _mib(_mem_of(by_system.get("chronik"))),
        _mib(_mem_of(by_system.get("raw"))),
    ]
    return "| " + " | ".join(cells) + " |"


def _attribution_rows(
    workload: Workload, backend: str, by_system: dict[str, dict[str, Any]]
) -> list[str]:
    unit = workload.unit
    chronik = _rate_of(by_system.get(COMPARED), unit)
    raw = _rate_of(by_system.get("raw"), unit)
    out = []
    for system in ATTRIBUTION_SYSTEMS:
        if system not in by_system:
            continue
        rate = _rate_of(by_system[system], unit)
        cells = [
            f"`{workload.name}`",
            backend,
            _UNIT_LABEL.get(unit, f"{unit}/s"),
            SYSTEM_LABELS.get(system, system),
            _figure_cell(by_system[system], unit),
            _ratio(chronik, rate),
            _ratio(raw, rate),
            _mib(_mem_of(by_system[system])),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _censored(result: dict[str, Any] | None, workload: Workload, size: Size | None) -> bool:
    """Whether fewer events were effected than offered (the latencies are lower bounds)."""
    if result is None or workload.offered_per_s is None or size is None:
        return False
    return int(result.get("events", 0)) < workload.offered_per_s * size.e2e_seconds


def _offered_cell(result: dict[str, Any] | None, workload: Workload, size: Size | None) -> str:
    """A latency under offered load: p99 (p50, and the rate achieved of the rate offered).

    When fewer events were effected than offered, the rest were counted with their
    latency at the cut-off: the percentiles are lower bounds, marked ">=".
    """
    p99 = _rate_of(result, workload.unit)
    if result is None or p99 is None:
        return "n/a"
    bound = ">= " if _censored(result, workload, size) else ""
    extra = [f"p50 {bound}{_ms(_p50_of(result))}"]
    achieved = result.get("events_per_s")
    if achieved is not None and workload.offered_per_s is not None:
        extra.append(f"{_rate(float(achieved))} of {workload.offered_per_s:,} events/s")
    return f"{bound}{_ms(p99)} ({', '.join(extra)})"


def _target_cell(
    workload: Workload, chronik: float | None, ceiling: float | None, lower_bound: bool = False
) -> str:
    if workload.target_ratio is not None:
        goal = f">= {workload.target_ratio:.2f}x broker"
        if chronik is None or ceiling is None or ceiling <= 0:
            return f"{goal}: n/a"
        met = chronik / ceiling >= workload.target_ratio
    elif workload.target_p99_ms is not None:
        goal = f"p99 < {workload.target_p99_ms:g} ms"
        if chronik is None:
            return f"{goal}: n/a"
        if lower_bound and chronik < workload.target_p99_ms:
            return f"{goal}: unknown (a lower bound)"
        met = chronik < workload.target_p99_ms
    else:
        return ""
    return f"{goal}: {'met' if met else '**missed**'}"


def _messaging_row(
    workload: Workload, backend: str, by_system: dict[str, dict[str, Any]], size: Size | None
) -> str:
    unit = workload.unit
    chronik, ceiling = by_system.get(COMPARED), by_system.get(CEILING)
    rates = {s: _rate_of(by_system.get(s), unit) for s in (COMPARED, CEILING)}
    if workload.offered_per_s is not None:
        figures = [_offered_cell(chronik, workload, size), _offered_cell(ceiling, workload, size)]
    else:
        figures = [_figure_cell(chronik, unit), _figure_cell(ceiling, unit)]
    ratio = _latency_ratio if unit == "ms" else _ratio
    cells = [
        f"`{workload.name}`",
        backend,
        _UNIT_LABEL.get(unit, f"{unit}/s"),
        *figures,
        ratio(rates[COMPARED], rates[CEILING]),
        _target_cell(workload, rates[COMPARED], rates[CEILING], _censored(chronik, workload, size)),
        _mib(_mem_of(chronik)),
        _mib(_mem_of(ceiling)),
    ]
    return "| " + " | ".join(cells) + " |"


def render_markdown(doc: dict[str, Any], split: dict[str, Any] | None = None) -> str:
    """The page from the results document, and the split deployment's section if given."""
    machine: dict[str, Any] = doc.get("machine", {})
    results: list[dict[str, Any]] = sorted(doc.get("results", []), key=sort_key)
    size_name = str(doc.get("size", "?"))
    size = SIZES.get(size_name)
    pg: dict[str, Any] = machine.get("postgres") or {}

    out: list[str] = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks.run` from `benchmarks/results/latest.json`;"
        " do not edit by hand (re-render with `python -m benchmarks.run --markdown-only`).",
        "",
        f"- Run started {doc.get('started_at')}, size **{size_name}**"
        + (f" ({_describe_size(size)})" if size is not None else ""),
    ]
    measured = sorted(str(r["measured_at"]) for r in results if r.get("measured_at"))
    if measured and measured[0] != measured[-1]:
        out.append(f"- Rows measured between {measured[0]} and {measured[-1]}")
    out += _load_line(doc)
    out += _machine_lines(machine)
    impl = (machine.get("psycopg") or {}).get("implementation")
    driver = (
        f"the compiled psycopg 3 (`{impl}`) for every system"
        if impl in ("c", "binary")
        else f"**psycopg's `{impl}` implementation, not the compiled one**"
    )
    out += [
        "- Durability, the same for every system: SQLite in WAL mode with"
        " `synchronous=FULL`; PostgreSQL with"
        f" `synchronous_commit={pg.get('synchronous_commit', 'n/a')}`"
        f" (fsync={pg.get('fsync', 'n/a')}); {driver}. The one exception is the table"
        ' "fsync off (CPU only)", labelled as such.',
        "- Every row is one measurement in a fresh process on a fresh SQLite file or"
        " PostgreSQL schema; set-up is untimed. One run, not a median: on a shared 2-core"
        " machine read single numbers as +-30% and trust ratios more than absolutes.",
        "- Rates are events/s, except `d_load` and `d_load_snapshot`, which are loads/s."
        " Peak MiB is the worker process's peak RSS (set-up included). A row that ran out"
        " of time shows `timed out` (the others still ran).",
        "- `raw` is the physical limit: the driver alone on a minimal table (`id` integer"
        " primary key as the position, `stream`, `version`, `type`, `data`,"
        " `UNIQUE (stream, version)`), with chronik's own payload bytes, every row built"
        " before the timed loop. Single appends are one transaction each (SQLite"
        " `BEGIN IMMEDIATE`/`INSERT`/`COMMIT`; PostgreSQL a prepared autocommit `INSERT`),"
        " `c_batch` is `executemany` in one transaction, `f_concurrent` is 8 threads on"
        " their own connections (on SQLite they wait for the write lock in SQLite's busy"
        " handler, a 60 s busy timeout: 8 writers to one file serialize). Its reads fetch"
        " the rows and stop. `raw + decode` reads the same rows and decodes each with"
        " msgspec into what chronik returns, a frozen msgspec Struct per event holding the"
        " decoded domain event; in `d_load` it also folds every event into the aggregate."
        " A load from a snapshot reads the snapshot and then the events after it (none"
        " here), two statements, as chronik does."
        " It is the fair baseline of the reads: chronik / raw + decode is the column to"
        " read there, chronik / raw everywhere else.",
        "- chronik's writers in `f_concurrent` are 8 asyncio tasks on one store, whose"
        " appends share commits (group commit); that is how it can beat 8 raw connections"
        " at the same durability. chronik and eventsourcing store ids, times and metadata"
        " that the minimal table has no column for: that work is part of what is measured.",
        '- Until issue 14 the baseline was what the table "Other baselines" calls `raw,'
        " same schema as chronik`: ten columns with a second unique index on a random"
        " UUIDv4 id, rows built (uuid4, timestamp, encoding) inside the timed loop, reads"
        " of `SELECT *` without decoding. That handicap made chronik's ratios look better"
        " than they are; the table keeps it so each change of ratio can be attributed"
        " (its `raw / it` column is the handicap). The ratios published before (run of"
        " 2026-11-27, SQLite / PostgreSQL) fell where the old baseline was slowed most:"
        " single appends (`a_create` 0.77x / 0.80x, `b_append` 0.73x / 0.71x: the random"
        " index and the per-row building), `c_batch` (2.08x / 1.29x: 100 rows built inside"
        " the timing; on PostgreSQL COPY is twice executemany), and the PostgreSQL reads"
        " (`d_load` 0.89x, `e_read_all` 0.87x: a UUID and a datetime object per row in the"
        " old raw, and no decoding). `f_concurrent` on PostgreSQL hardly depends on the"
        " baseline (the commit is the cost, not the row): it swings with the machine's"
        " load from one run to the next.",
        "- The target column holds issue 14's goals for chronik against the fair raw"
        " baseline of the row; they are goals, not yet promises.",
        "- `g_tail_p99_ms` is a latency, lower is better: each cell is the p99 in ms with"
        " the p50 in brackets, from the append's commit to the projection's commit of the"
        " same event; its ratio columns are chronik p99 / other p99, so **below 1 means"
        " chronik is faster** (in every other row, above 1 means chronik is faster).",
        "- `g_catchup` and `g_tail_p99_ms`: one upsert into `items` per event, committed"
        " with the projection's checkpoint. eventsourcing runs its `ProjectionRunner` on"
        " PostgreSQL; on SQLite, where it has no subscriptions, a follower pages through"
        " its notification log into the same kind of view (so it has no live tail there)."
        " `raw` projects pages of 1,000 events, one transaction per page, and tails with"
        " LISTEN/NOTIFY on PostgreSQL.",
        "- `g_catchup_filtered`: the same projection over a store where its type is 1 event"
        " in 20; the rate is store positions passed per second, filtered through the type"
        " index. Its note times, on the same store, the projection reading and decoding"
        " every event (as followers did before filters) and the filtered read with the"
        " indexes dropped (ADR 0024).",
        "- The messaging workloads (`h_*`, in their own table) run on PostgreSQL with a"
        " broker: backend `nats` is PostgreSQL + NATS JetStream, `rabbitmq` PostgreSQL +"
        " RabbitMQ. `broker` is the broker's own client alone, publishing messages of the"
        " same size with 256 in flight: the ceiling a relay could reach. `h_relay_drain`"
        " times chronik's relay (default batches of 256) draining a pre-filled outbox;"
        " `h_e2e_p99_ms` offers a steady load and times each event from the producer's"
        " append commit to the consumer's append commit (effect + inbox mark), relay,"
        " broker and consumer in one process; its cell also gives the rate achieved, and"
        " `>=` marks lower bounds: events with no effect by the end of the run (half as"
        " long after the last append as the load was offered) count with their latency"
        " then. `h_e2e_split_p99_ms` is the same with producer, `chronik relay` and"
        " consumer in three processes, as deployed.",
        "",
        "Workloads:",
        "",
    ]
    out += [f"- `{w.name}`: {w.title}" for w in WORKLOADS.values()]

    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for result in results:
        key = (str(result["workload"]), str(result["backend"]))
        rows.setdefault(key, {})[str(result["system"])] = result
    failures: list[str] = []
    not_applicable: list[str] = []
    notes: list[str] = []
    store: list[str] = []
    fsync_off: list[str] = []
    attribution: list[str] = []
    messaging: list[str] = []
    for (workload, backend), by_system in rows.items():
        known = WORKLOADS.get(workload) or Workload(workload, workload)
        _collect(workload, backend, by_system, notes, not_applicable, failures)
        if CEILING in known.systems:
            messaging.append(_messaging_row(known, backend, by_system, size))
        elif known.fsync_off:
            fsync_off.append(_fsync_off_row(known, backend, by_system))
        else:
            store.append(_store_row(known, backend, by_system))
            attribution += _attribution_rows(known, backend, by_system)

    if store:
        out += [
            "",
            "| workload | backend | unit | chronik | eventsourcing | raw | raw + decode"
            " | chronik / eventsourcing | chronik / raw | chronik / raw + decode"
            " | target (issue 14) | chronik MiB | eventsourcing MiB | raw MiB"
            " | memory chronik / eventsourcing |",
            "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|",
            *store,
        ]
    if fsync_off:
        out += [
            "",
            "fsync off (CPU only): **not the durability chronik ships.** For these rows"
            " alone, chronik and raw run with SQLite `synchronous=OFF` or PostgreSQL"
            " `synchronous_commit=off`, so what is left of a single append is CPU:"
            " the statement, the driver and, for chronik, its own code.",
            "",
            "| workload | backend | unit | chronik | raw | chronik / raw | target (issue 14)"
            " | chronik MiB | raw MiB |",
            "|---|---|---|--:|--:|--:|---|--:|--:|",
            *fsync_off,
        ]
    if attribution:
        out += [
            "",
            "Other baselines, for attribution: `raw COPY` is `c_batch` with binary COPY"
            " instead of executemany (PostgreSQL); `raw, same schema as chronik` is the"
            " baseline before issue 14 (see above).",
            "",
            "| workload | backend | unit | baseline | rate | chronik / it | raw / it | MiB |",
            "|---|---|---|---|--:|--:|--:|--:|",
            *attribution,
        ]
    if messaging:
        out += [
            "",
            "Messaging (PostgreSQL event store + broker; `broker` is the broker's client alone,"
            " the ceiling):",
            "",
            "| workload | backend | unit | chronik | broker | chronik / broker | target"
            " | chronik MiB | broker MiB |",
            "|---|---|---|--:|--:|--:|---|--:|--:|",
            *messaging,
        ]
    if notes:
        out += ["", "Notes:", "", *notes]
    if not_applicable:
        out += ["", "Not applicable (shown as n/a above):", "", *not_applicable]
    if failures:
        out += ["", "Failures (shown as n/a or timed out above):", "", *failures]
    out += render_split(split)
    out += _console_section()
    return "\n".join(out) + "\n"


def _console_section() -> list[str]:
    """The console pages' benchmark (``benchmarks.console``), from its own results file."""
    from benchmarks.console import DEFAULT_OUT, section

    if not DEFAULT_OUT.exists():
        return []
    return section(json.loads(DEFAULT_OUT.read_text()))
