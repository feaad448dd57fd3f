"""``dvpctl``: a kubectl-like command line over the gateway's REST API (docs/cli.md).

A pure REST client: it imports ``service.client`` (config, download) and never the
gateway's own layers (core, api, store, cluster) or the embedded cluster.
"""
