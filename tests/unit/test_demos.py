"""``chronik demo`` and ``chronik tour`` find the reference system through an entry point."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from chronik import _demos
from chronik.errors import ConfigurationError


def test_the_installed_reference_system_is_the_demo_with_what_it_serves() -> None:
    demo = _demos.find_demo("chronik demo")
    assert demo.name == "reference"
    assert demo.app == "reference:specs"
    assert callable(demo.seed_and_explain) and callable(demo.run_tour)


def test_without_a_demo_installed_the_error_says_what_to_install_in_one_line() -> None:
    with pytest.raises(ConfigurationError) as caught:
        _demos.find_demo("chronik tour", group="chronik.no_demos_here")
    message = str(caught.value)
    assert message.startswith("chronik tour needs the reference system")
    assert "make .venv" in message and "pip install -e examples/reference" in message
    assert "\n" not in message


def test_the_reference_demo_is_preferred_when_several_are_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = EntryPoint("another", "reference.demo", _demos.GROUP)
    reference = EntryPoint("reference", "reference.demo", _demos.GROUP)
    monkeypatch.setattr(_demos, "entry_points", lambda group: [other, reference])
    assert _demos.find_demo("chronik demo").name == "reference"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("no_such_module_for_a_demo", "cannot be loaded"),
        ("reference.demo:NOPE", "cannot be loaded"),
        ("reference.tour", r"needs APP \(a str\), seed_and_explain and run_tour"),
    ],
)
def test_an_entry_point_that_is_no_demo_is_a_configuration_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    broken = EntryPoint("broken", value, _demos.GROUP)
    monkeypatch.setattr(_demos, "entry_points", lambda group: [broken])
    with pytest.raises(ConfigurationError, match=expected) as caught:
        _demos.find_demo("chronik demo")
    assert "'broken'" in str(caught.value) and value in str(caught.value)
