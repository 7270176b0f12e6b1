"""The ``chronik`` command."""

from __future__ import annotations


def main() -> None:
    from chronik.tour import app

    app()
