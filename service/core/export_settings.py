"""Limits and defaults of exports (``CoreSettings.export``; flags in ``service.settings``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportSettings:
    max_concurrent: int = 16           # exports streaming at once, in this replica
    max_per_caller: int = 4            # of those, by one caller
    retry_after_seconds: int = 2       # the hint a refused export carries
    default_ttl_seconds: float = 120.0
    ready_timeout: float = 120.0       # how long the DataExport may take to get Ready
    recreate_attempts: int = 3         # an export that expires before it is Ready is re-created
    upstream_retries: int = 3          # a broken upstream read is resumed where it stopped
    piece: int = 1 << 20               # bytes per upstream read and per message
    hole_block: int = 64 << 10         # granularity of hole detection (gRPC)
    progress_interval: float = 5.0     # the operation's transfer is saved this often
    # An unfinished export operation no stream has touched for this long is swept (longer
    # than ready_timeout: waiting for the DataExport saves nothing; streaming saves progress).
    stale_after: float = 180.0
    digest_memory: int = 4096          # whole-volume digests remembered, by content tag
