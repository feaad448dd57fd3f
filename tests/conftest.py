"""Shared fixtures live in tests/support/*; each module there is a pytest plugin."""

import os

# Before anything imports grpc (it reads this once, at import): tests fork children (the
# gateway, kubectl, PostgreSQL) while their gRPC channels are busy, and grpc's fork
# handlers then restart its poller in the child, which can abort before exec (EBADF on an
# epoll fd that close_fds closed): 3 spawns in 60 when measured. The children exec at
# once and need none of it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

pytest_plugins = [
    "tests.support.postgres",   # postgres_url (a real throwaway server), database_url (sqlite|postgresql)
    "tests.support.cluster",    # embedded_cluster (in-process, real HTTP), kubectl helper
    "tests.support.gateway",    # gateway_server (both listeners over real sockets)
]
