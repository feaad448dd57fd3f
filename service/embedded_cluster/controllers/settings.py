"""Settings of the simulated controllers (see ControllerManager)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from service.embedded_cluster.contracts import ExportFaults

# Measured (4 GiB, aiohttp client reading 1 MiB pieces, 2 CPUs): 512 KiB writes keep the client
# near 2 GiB/s where 1 MiB writes mostly leave it near 0.85 GiB/s; curl is as fast or faster.
DEFAULT_EXPORT_CHUNK = 512 << 10


def _nobody(token: str) -> str | None:
    return None


class NoExportFaults:
    """The ExportFaults of a cluster nobody injects faults into."""

    def take_export_expiry(self) -> bool:
        return False

    def take_export_drop(self) -> int | None:
        return None

    def export_rate(self) -> float | None:
        return None


@dataclass(frozen=True)
class ControllerSettings:
    step_delay: float = 0.0              # seconds between simulated steps (0 in tests)
    base_url: str = ""                   # the API server's URL, e.g. http://127.0.0.1:41234
    authenticate: Callable[[str], str | None] = _nobody   # bearer token -> user name, for the exporter
    export_chunk: int = DEFAULT_EXPORT_CHUNK   # bytes per write of the exporter (at most content.MAX_CHUNK)
    export_module: bool = True           # False: no DataExport controller and no exporter (module disabled)
    faults: ExportFaults = field(default_factory=NoExportFaults)   # injected by tests via the FaultInjector
    ca_pem: bytes | None = None          # the API server's CA (PEM) when it serves HTTPS: DataExport status.ca
    resync_period: float = 5.0           # every object is reconciled again this often (missed events heal)
