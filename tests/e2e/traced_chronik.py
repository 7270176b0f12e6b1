"""``chronik`` with OpenTelemetry's SDK set up, as a user who exports traces runs it.

``python traced_chronik.py serve ...`` sets a TracerProvider (its resource from the
standard ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES``) whose spans are written, one
JSON object a line, to the file ``CHRONIK_TEST_SPANS`` names, then runs the command.
Production would export over OTLP (docs/operations.md, "Tracing"); a file lets a test
join the spans of separate processes. Each span is written when it ends, so a process
killed later loses none it finished.
"""

from __future__ import annotations

import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor


def one_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"


def main() -> None:
    spans = open(os.environ["CHRONIK_TEST_SPANS"], "a", buffering=1)  # noqa: SIM115
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(
        SimpleSpanProcessor(ConsoleSpanExporter(out=spans, formatter=one_line))
    )
    trace.set_tracer_provider(provider)

    from chronik.cli import main as chronik

    sys.argv[0] = "chronik"
    chronik()


if __name__ == "__main__":
    main()
