"""Settings of the simulated controllers (see ControllerManager)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _nobody(token: str) -> str | None:
    return None


@dataclass(frozen=True)
class ControllerSettings:
    step_delay: float = 0.0              # seconds between simulated steps (0 in tests)
    base_url: str = ""                   # the API server's URL, e.g. http://127.0.0.1:41234
    authenticate: Callable[[str], str | None] = _nobody   # bearer token -> user name, for the exporter
    export_chunk: int = 1 << 20
    ca_pem: bytes | None = None          # the API server's CA (PEM) when it serves HTTPS: DataExport status.ca
    resync_period: float = 5.0           # every object is reconciled again this often (missed events heal)
