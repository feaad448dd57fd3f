"""Clients of the gateway's REST API used by the ``dvp-gateway`` command line (``download``)."""
