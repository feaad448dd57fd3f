"""SQL persistence: operations with their timelines, and the hash-chained audit log."""

from service.store.db import Database, migrate

__all__ = ["Database", "migrate"]
