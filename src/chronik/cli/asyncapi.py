"""``chronik asyncapi``: the AsyncAPI 3 document of a system's public events."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated

import typer

from chronik.cli.run import console, errors
from chronik.messaging.asyncapi import asyncapi_document, languages
from chronik.messaging.contracts import PublishedLanguage

__all__ = ["asyncapi"]


def asyncapi(
    language: Annotated[
        list[str],
        typer.Option(help="A PublishedLanguage to describe, as module:attribute (repeatable)."),
    ],
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    server: Annotated[
        list[str] | None, typer.Option(help="A server as name=url (repeatable).")
    ] = None,
) -> None:
    """Write the AsyncAPI 3 document of the public events, as JSON."""
    found = []
    for spec in language:
        module_name, _, attribute = spec.partition(":")
        try:
            value = getattr(importlib.import_module(module_name), attribute or "LANGUAGE")
        except (ImportError, AttributeError) as exc:
            raise typer.BadParameter(f"{spec}: {exc}") from None
        if not isinstance(value, PublishedLanguage):
            raise typer.BadParameter(f"{spec} is not a PublishedLanguage")
        found.append(value)
    servers = dict(item.split("=", 1) for item in server or [])
    document = asyncapi_document(languages(*found), servers=servers)
    text = json.dumps(document, indent=2, sort_keys=False)
    if output is None:
        console.print_json(text)
    else:
        output.write_text(text + "\n")
        errors.print(f"wrote {output} ({len(document['channels'])} channels)")
