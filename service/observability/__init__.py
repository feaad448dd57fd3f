"""Metrics (Prometheus), traces (OpenTelemetry) and the request id that ties them to logs
and audit events (docs/observability.md).

``Telemetry`` is what the rest of the gateway is handed; with metrics and tracing both
off it does nothing, and ``tracing`` (the only module importing OpenTelemetry) is
imported only when tracing is on.
"""
