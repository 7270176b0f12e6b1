"""Forgotten personal data leaves the embedded store's files: the database, its WAL, all.

``chronik serve`` runs the reference system on SQLite; a lead with a name found nowhere
else is created, edited, then anonymized. Once the read model shows it forgotten, no
file of the data directory may hold the name or the phone, byte for byte: neither while
the service runs nor after it is killed with SIGKILL and started again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from reference_flows import new_lead
from reference_system import Launcher, Service, System, eventually, launched

pytestmark = pytest.mark.slow


def copies(data_dir: Path, needles: list[bytes]) -> dict[str, int]:
    """How often the needles occur in each file of the data directory (files with none left out)."""
    found: dict[str, int] = {}
    for path in sorted(data_dir.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            count = sum(data.count(needle) for needle in needles)
            if count:
                found[path.name] = count
    return found


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    with launched(tmp_path / "logs") as launcher:
        yield launcher


@pytest.fixture
async def service(launcher: Launcher, tmp_path: Path) -> Service:
    env = {"CHRONIK_APP": "reference:specs", "CHRONIK_DATA_DIR": str(tmp_path / "data")}
    service = launcher.serve("reference", env)
    await service.wait_ready()
    return service


async def test_a_forgotten_lead_leaves_no_copy_in_the_files_running_or_after_a_kill(
    service: Service, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    name = f"Wilhelmina Quarrington-{secrets.token_hex(4)}"
    phone = f"+99 {secrets.randbelow(10**9):09d}"
    needles = [name.encode(), phone.encode()]
    system = System.embedded(service.url)
    try:
        sales = system.sales
        lead = await new_lead(system, name, phone)
        for n in range(5):  # more pages written while the name is in the read model
            await sales.post(f"/leads/{lead.id}/contact", {"note": f"call {n}"})
        other = await new_lead(system, "Someone Else", "+1 555 0100")
        seen = await sales.get(f"/leads/{lead.id}", after=other.position)
        assert seen["name"] == name
        assert copies(data_dir, needles), "the name must be in the files before forgetting"

        forgotten = await sales.post(f"/leads/{lead.id}/anonymize")
        view = await sales.get(f"/leads/{lead.id}", after=forgotten.position)
        assert (view["name"], view["phone"]) == ("[forgotten]", "[forgotten]")
        await eventually(
            lambda: _copies(data_dir, needles), lambda c: c == {}, "the name gone from the files"
        )

        service.kill()
        await service.restart()
        await system.reconnect()
        assert (await sales.get(f"/leads/{lead.id}"))["name"] == "[forgotten]"
        assert (await sales.get(f"/leads/{other.id}"))["name"] == "Someone Else"
        await eventually(
            lambda: _copies(data_dir, needles),
            lambda c: c == {},
            "the name gone from the files after the restart",
        )
    finally:
        await system.close()


async def _copies(data_dir: Path, needles: list[bytes]) -> dict[str, int]:
    return copies(data_dir, needles)
