"""Shared fixtures live in tests/support/*; each module there is a pytest plugin."""

pytest_plugins = [
    "tests.support.postgres",   # postgres_url (a real throwaway server), database_url (sqlite|postgresql)
    "tests.support.cluster",    # embedded_cluster (in-process, real HTTP), kubectl helper
    "tests.support.gateway",    # gateway_server (both listeners over real sockets)
]
