"""OTLP/HTTP trace ingest: spans with OpenInference attributes become runs, stages and
candidate rows (`xray-lake collect`, `xray-lake import`).

Needs the `otlp` extra (`pip install 'xray-lake[otlp]'`: opentelemetry-proto,
openinference-semantic-conventions, googleapis-common-protos); `require()` raises a one-line
error naming it when they are missing. Modules, in the order data flows:
`decode` (request bytes -> `SpanData`), `buffer` (spans -> whole traces), `mapping`
(a trace -> runs and stages, written through the SDK), `server` and `files` (the two ways in).
"""

from __future__ import annotations

import importlib.util

from xray_lake.errors import XrayLakeError

_NEEDED = (
    ("opentelemetry.proto", "opentelemetry-proto"),
    ("openinference.semconv", "openinference-semantic-conventions"),
    ("google.rpc", "googleapis-common-protos"),
)


def require() -> None:
    """Raise XrayLakeError naming the packages to install when the `otlp` extra is missing."""
    missing = []
    for module, package in _NEEDED:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(package)
    if missing:
        raise XrayLakeError(
            f"OTLP ingest needs {', '.join(missing)}, which are not installed: "
            "pip install 'xray-lake[otlp]'")
