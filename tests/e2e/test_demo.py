"""``chronik demo`` as a person runs it: its printed lines, its clock, and how it stops.

The demo runs as a subprocess whose stdout is a pipe (never a terminal), on its own port
and data directory. ``docs/tour.md``'s "Turning the clock" and "Flows back into sales"
blocks are run line by line against it, as a shell would run them; each line whose
comment is JSON must print that JSON (reads are repeated until they do: the processes
and consumers act within a second or two).
SIGTERM (or Ctrl-C) in the middle of a burst of requests answers every one of them;
SIGTERM while the demo seeds ends it cleanly, with exit code 0.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from runtime_process import BASE_ENV, CHRONIK, chronik, free_port, serving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: the SIGTERM-to-exit budget the demo runs with here (the default drain delay of 2 s)
GRACE = 15.0


@dataclass
class Demo:
    """A ``chronik demo`` subprocess with its stdout and stderr on pipes, read as they come."""

    process: asyncio.subprocess.Process
    port: int
    data_dir: Path
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    async def said(self, text: str, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while text not in self.stdout:
            if self.process.returncode is not None:
                raise AssertionError(f"the demo exited with {self.process.returncode}: {self}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the demo did not say {text!r} within {within:g} s: {self}")
            await asyncio.sleep(0.05)

    def terminate(self, sig: signal.Signals = signal.SIGTERM) -> float:
        self.process.send_signal(sig)
        return time.monotonic()

    async def exit_code(self, within: float = GRACE) -> int:
        try:
            code = await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"the demo did not exit within {within:g} s: {self}") from None
        await asyncio.gather(*self.readers)
        return code

    def __str__(self) -> str:
        return f"\n--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"


async def _read(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    assert stream is not None
    while chunk := await stream.read(4096):
        into.append(chunk.decode(errors="replace"))


Launch = Callable[..., Awaitable[Demo]]


@pytest.fixture
async def launch(tmp_path: Path) -> AsyncIterator[Launch]:
    """Starts ``chronik demo`` on a free port (``COLUMNS`` as given); kills it at the end."""
    started: list[Demo] = []

    async def start(columns: str = "200") -> Demo:
        port = free_port()
        data_dir = tmp_path / "demo"
        process = await asyncio.create_subprocess_exec(
            CHRONIK,
            "demo",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**BASE_ENV, "COLUMNS": columns, "CHRONIK_SHUTDOWN_GRACE": str(GRACE)},
        )
        running = Demo(process, port, data_dir)
        running.readers = [
            asyncio.create_task(_read(process.stdout, running.out)),
            asyncio.create_task(_read(process.stderr, running.err)),
        ]
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            if running.process.returncode is None:
                running.process.kill()
                await running.process.wait()
            await asyncio.gather(*running.readers, return_exceptions=True)


@pytest.fixture
async def demo(launch: Launch) -> Demo:
    return await launch()


# -- the printed lines ---------------------------------------------------------------


async def test_the_curl_lines_are_printed_whole_when_stdout_is_a_narrow_pipe(
    launch: Launch,
) -> None:
    demo = await launch(columns="40")  # rich would wrap at 40 columns: it must not
    await demo.said("A walk through it all")
    base = demo.url
    for line in (
        f"  curl -s -X POST {base}/sales/leads -H 'content-type: application/json' \\",
        """       -d '{"name": "Katherine Johnson", "phone": "+1 757 555 0100"}'""",
        f"  curl -s -X POST {base}/travel/trips -H 'content-type: application/json' \\",
    ):
        assert line in demo.stdout.splitlines(), str(demo)
    # The clock's command as the shell that started the demo would call it: chronik is
    # not on this test's PATH, so it is named by its path.
    [command] = re.findall(
        rf"^  (\S+) clock advance 48h --url {re.escape(base)}$", demo.stdout, re.M
    )
    assert _same_file(command, CHRONIK), command


def _same_file(one: str, other: str) -> bool:
    return Path(one).resolve() == Path(other).resolve()


# -- the tour's clock ----------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One command of a shell block: what it runs, the variable it sets, what it prints."""

    command: str
    sets: str | None
    expected: object | None  # the JSON its comment shows, if its comment is JSON


_ASSIGNED = re.compile(r"([A-Z]+)=\$\((.*)\)", re.S)


def tour_block(heading: str) -> list[Line]:
    """The ```bash block under ``heading`` in docs/tour.md, as commands."""
    tour = (ROOT / "docs" / "tour.md").read_text()
    section = tour.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines: list[Line] = []
    pending = ""
    for raw in block.splitlines():
        if not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        text = pending + raw
        pending = ""
        # A trailing comment: two spaces and '#', outside single quotes.
        command, comment = text, None
        if "  #" in text:
            head, _, tail = text.rpartition("  #")
            if head.count("'") % 2 == 0:
                command, comment = head.rstrip(), tail.strip()
        expected: object | None = None
        if comment is not None:
            try:
                expected = json.loads(comment)
            except ValueError:
                expected = None
        found = _ASSIGNED.fullmatch(command.strip())
        if found:
            lines.append(Line(found.group(2), found.group(1), expected))
        else:
            lines.append(Line(command.strip(), None, expected))
    assert not pending, "a block ends in a continued line"
    return lines


async def shell(command: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


#: what a line that sets a shell variable must print: an id, or a time (one word)
_VALUE = re.compile(r"[0-9A-Za-z:_.-]+\n")


async def run_tour_block(lines: list[Line], demo: Demo) -> dict[str, str]:
    """Runs a block's lines in order as a shell would; returns the environment they left.

    Each line must exit 0 and print the JSON its comment shows; a read (a GET) is
    repeated until it does, since the processes and consumers act a moment later. A
    line that sets a variable must print one word (an id, a time): a read that does not
    yet is repeated too.
    """
    env = {**BASE_ENV, "B": demo.url, "PATH": f"{Path(CHRONIK).parent}:/usr/bin:/bin"}
    for line in lines:
        command = line.command.replace(".venv/bin/chronik", shlex.quote(CHRONIK))
        reads = command.startswith("curl -s $B/")  # a GET: safe to repeat until it shows
        deadline = time.monotonic() + 30
        while True:
            code, out, err = await shell(command, env)
            assert code == 0, (line, out, err, str(demo))
            if line.sets:
                done = _VALUE.fullmatch(out) is not None and out != "null\n"
            else:
                done = line.expected is None or json.loads(out) == line.expected
            if done:
                break
            assert reads, (line, out, str(demo))
            assert time.monotonic() < deadline, (line, out, str(demo))
            await asyncio.sleep(0.2)
        if line.sets:
            env[line.sets] = out.strip()
    return env


async def test_the_tours_clock_cancels_a_trip_nobody_approved_and_a_campaign_of_a_silent_partner(
    demo: Demo,
) -> None:
    await demo.said("seeded example data")
    lines = tour_block("Turning the clock")
    assert [line.sets for line in lines if line.sets] == ["T", "C"]
    assert sum(line.expected is not None for line in lines) == 5, lines
    assert sum("clock advance" in line.command for line in lines) == 2, lines
    env = await run_tour_block(lines, demo)
    assert all(re.fullmatch(r"[0-9a-f-]+", env[name]) for name in "TC"), env

    # What the block's comments say besides the JSON: compensations, the budget back.
    async with httpx.AsyncClient(base_url=demo.url, timeout=10) as client:
        booking = (await client.get(f"/travel/trips/{env['T']}/booking")).json()
        assert booking["status"] == "cancelled" and booking["finished"], booking
        assert booking["timeouts"] == {}
        saga = (await client.get(f"/campaigns/campaigns/{env['C']}/publishing")).json()
        assert saga["status"] == "cancelled" and saga["timeouts"] == {}, saga
        budget = (await client.get("/campaigns/budget")).json()
        # seeded: 50000 topped up, 25000 from Ada's order, 20000 reserved by Spring sale
        assert budget["reserved_cents"] == 20_000, budget
        clock = (await client.get("/admin/clock")).json()
        assert clock["ahead_seconds"] == pytest.approx(48 * 3600 + 120)
    assert (demo.data_dir / "virtual-clock").read_text().strip() == f"{48 * 3600 + 120:.6f}"


async def test_the_tours_flows_back_into_sales_record_the_visits_and_list_the_promotion(
    demo: Demo,
) -> None:
    await demo.said("seeded example data")
    lines = tour_block("Flows back into sales")
    assert [line.sets for line in lines if line.sets] == ["L", "ON", "T", "T", "C"]
    assert sum(line.expected is not None for line in lines) == 8, lines
    env = await run_tour_block(lines, demo)

    # What the block's comments say besides the JSON: the lead's history holds travel's
    # word for both trips, in the order they ended.
    async with httpx.AsyncClient(base_url=demo.url, timeout=10) as client:
        history = (await client.get(f"/sales/leads/{env['L']}/history")).json()
        told = [(e["type"], e["data"]["trip_id"]) for e in history if "trip_id" in e["data"]]
        assert [kind for kind, _ in told] == ["sales.visit_booked", "sales.visit_to_reschedule"]
        assert told[1][1] == env["T"]
        trips = (await client.get("/travel/trips")).json()
        mine = {t["trip_id"]: t for t in trips if t["lead_id"] == env["L"]}
        assert sorted(t["status"] for t in mine.values()) == ["cancelled", "confirmed"], mine


# -- stopping ------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
async def test_sigterm_in_a_burst_of_requests_answers_every_request_and_exits_0(
    demo: Demo, sig: signal.Signals
) -> None:
    await demo.said("seeded example data")
    burst = 200
    limits = httpx.Limits(max_connections=burst, max_keepalive_connections=0)
    answered: list[int] = []
    sending: list[str] = []
    all_sent = asyncio.Event()

    async def on_its_way(request: httpx.Request) -> None:
        sending.append(request.url.path)
        if len(sending) == burst:
            all_sent.set()

    async def one(client: httpx.AsyncClient, n: int) -> None:
        body = {"name": f"Burst {n}", "phone": f"+1 202 555 {n:04d}"}
        response = await client.post("/sales/leads", json=body)
        answered.append(response.status_code)

    async with httpx.AsyncClient(
        base_url=demo.url, timeout=GRACE, limits=limits, event_hooks={"request": [on_its_way]}
    ) as client:
        requests = [asyncio.create_task(one(client, n)) for n in range(burst)]
        await all_sent.wait()  # every request is on its way, none answered yet
        demo.terminate(sig)
        outcomes = await asyncio.gather(*requests, return_exceptions=True)
    failures = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    assert failures == [], f"{len(failures)} of {burst} got no answer: {failures[:3]}{demo}"
    assert sorted(set(answered)) == [201], answered
    assert await demo.exit_code() == 0, str(demo)
    assert "Traceback" not in demo.stderr, str(demo)


@pytest.mark.parametrize(
    ("moment", "path"),
    [
        ("once it is ready, before the first seed write", "/readyz"),
        ("once the first lead of the seed shows", "/sales/leads"),
    ],
)
async def test_sigterm_while_the_demo_seeds_stops_it_cleanly_with_exit_code_0(
    demo: Demo, moment: str, path: str
) -> None:
    async with httpx.AsyncClient(base_url=demo.url, timeout=5) as client:
        deadline = time.monotonic() + 60
        while True:
            assert demo.process.returncode is None, str(demo)
            assert time.monotonic() < deadline, f"not {moment} within 60 s{demo}"
            try:
                answer = await client.get(path)
                if answer.status_code == 200 and answer.json() not in ([], None):
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.005)
    signalled = demo.terminate()
    code = await demo.exit_code()
    assert code == 0, str(demo)
    assert time.monotonic() - signalled < GRACE
    assert "Traceback" not in demo.stderr + demo.stdout, str(demo)
    assert "stopping before the example data was all in" in demo.stderr, str(demo)
    assert "seeded example data" not in demo.stdout, str(demo)


def test_the_demo_refuses_a_clock_it_does_not_know(tmp_path: Path) -> None:
    done = subprocess.run(
        [CHRONIK, "demo", "--data-dir", str(tmp_path), "--clock", "sundial"],
        capture_output=True,
        text=True,
        timeout=60,
        env=BASE_ENV,
    )
    assert done.returncode == 2, done.stderr
    assert "CHRONIK_CLOCK (from flag)" in done.stderr and "'sundial'" in done.stderr


# -- chronik clock -------------------------------------------------------------------


async def test_chronik_clock_shows_and_turns_the_demos_clock_and_says_what_is_wrong(
    demo: Demo, tmp_path: Path
) -> None:
    await demo.said("A walk through it all")
    shown = await chronik("clock", "show", "--url", demo.url)
    assert shown.code == 0, shown.err
    assert re.fullmatch(
        r"the processes' clock reads \S+ \(0\.00 h ahead of the system's\)\n", shown.out
    )
    turned = await chronik("clock", "advance", "1d12h", "--url", demo.url)
    assert turned.code == 0, turned.err
    assert "(36.00 h ahead of the system's)" in turned.out

    unreadable = await chronik("clock", "advance", "soon", "--url", demo.url)
    assert unreadable.code == 2
    assert "'soon' is not a duration" in unreadable.err
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = await chronik("clock", "show", "--url", nobody)
    assert unreachable.code == 1
    assert unreachable.err_lines[0].startswith(f"error: {nobody}/admin/clock: ")
    assert len(unreachable.err_lines) == 1, unreachable.err

    async with serving(tmp_path / "serve", {"CHRONIK_DATA_DIR": str(tmp_path / "s")}) as served:
        system = await chronik("clock", "advance", "48h", "--url", served.url)
    assert system.code == 1
    assert system.err_lines == [
        f"error: {served.url}/admin/clock/advance: 404: the service runs no virtual clock "
        "(CHRONIK_CLOCK=virtual with CHRONIK_DEMO=1; `chronik demo` sets both)"
    ]
