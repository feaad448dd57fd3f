"""Table definitions (SQLAlchemy Core). ``migrations/versions/0001_initial.py`` creates
the same schema by hand; ``tests/gateway/test_store_migrations.py`` checks they agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on both backends (SQLite stores
    no offset, so every value is converted to UTC before it is written)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"unexpected datetime column value {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

operations = sa.Table(
    "operations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("namespace", sa.String(), nullable=False),
    sa.Column("target_api_version", sa.String(), nullable=False),
    sa.Column("target_kind", sa.String(), nullable=False),
    sa.Column("target_name", sa.String(), nullable=False),
    sa.Column("target_namespace", sa.String(), nullable=False),
    sa.Column("target_uid", sa.String(), nullable=False),
    # All resource_* are NULL until the custom resource has been written.
    sa.Column("resource_api_version", sa.String(), nullable=True),
    sa.Column("resource_kind", sa.String(), nullable=True),
    sa.Column("resource_name", sa.String(), nullable=True),
    sa.Column("resource_namespace", sa.String(), nullable=True),
    sa.Column("resource_uid", sa.String(), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("phase", sa.String(), nullable=False),
    sa.Column("conditions", sa.JSON(), nullable=False),
    sa.Column("results", sa.JSON(), nullable=False),
    sa.Column("warnings", sa.JSON(), nullable=False),
    sa.Column("error", sa.JSON(), nullable=True),
    sa.Column("actor", sa.String(), nullable=False),
    sa.Column("request_id", sa.String(), nullable=True),
    sa.Column("request_hash", sa.String(), nullable=False),
    sa.Column("request", sa.JSON(), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("update_time", UtcDateTime(), nullable=False),
    sa.Column("end_time", UtcDateTime(), nullable=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("transfer", sa.JSON(), nullable=True),
    # An export's content tag, set once its whole-image SHA-256 is known: a later export of
    # the same content, on any replica, announces that digest instead of hashing again.
    sa.Column("export_etag", sa.String(), nullable=True),
    # The resource's last applied resourceVersion: older reads are ignored (no step back).
    sa.Column("observed_resource_version", sa.String(), nullable=True),
)
sa.Index("ix_operations_keyset", operations.c.create_time, operations.c.id)
sa.Index("ix_operations_namespace_keyset", operations.c.namespace, operations.c.create_time, operations.c.id)
sa.Index("ix_operations_actor_keyset", operations.c.actor, operations.c.create_time, operations.c.id)
# Every list filter has its own (column, create_time, id) index: the page is one index
# range read newest first, never a sort of all the matching rows.
sa.Index("ix_operations_state_keyset", operations.c.state, operations.c.create_time, operations.c.id)
sa.Index("ix_operations_type_keyset", operations.c.type, operations.c.create_time, operations.c.id)
sa.Index("ix_operations_target_keyset", operations.c.target_name, operations.c.create_time, operations.c.id)
# The reconciler's resync reads the unfinished operations every few seconds: this index
# holds only those (usually none), so the read costs nothing however long the history.
# The predicate must match SqlOperationRepository.unfinished's literally (no parameters).
UNFINISHED_PREDICATE = "state IN ('PENDING', 'RUNNING')"
sa.Index("ix_operations_unfinished", operations.c.create_time, operations.c.id,
         postgresql_where=sa.text(UNFINISHED_PREDICATE), sqlite_where=sa.text(UNFINISHED_PREDICATE))
sa.Index("ix_operations_export_etag", operations.c.export_etag)
sa.Index(
    "uq_operations_actor_request_id",
    operations.c.actor,
    operations.c.request_id,
    unique=True,
    postgresql_where=operations.c.request_id.isnot(None),
    sqlite_where=operations.c.request_id.isnot(None),
)

operation_transitions = sa.Table(
    "operation_transitions",
    metadata,
    sa.Column("operation_id", sa.String(64), sa.ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("phase", sa.String(), nullable=False),
    sa.Column("reason", sa.String(), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("time", UtcDateTime(), nullable=False),
)

# ids are assigned by the appender (chain head + 1, under the chain lock) so every
# event's hash can cover its own id; no sequence could promise that without gaps.
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("time", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.String(), nullable=False),
    sa.Column("action", sa.String(), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("namespace", sa.String(), nullable=False),
    sa.Column("resource", sa.String(), nullable=False),
    sa.Column("protocol", sa.String(), nullable=False),
    sa.Column("request_id", sa.String(), nullable=False),
    sa.Column("operation_id", sa.String(), nullable=False),
    sa.Column("code", sa.String(), nullable=False),
    sa.Column("reason", sa.String(), nullable=False),
    sa.Column("details", sa.JSON(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
sa.Index("ix_audit_events_actor", audit_events.c.actor, audit_events.c.id)
sa.Index("ix_audit_events_namespace", audit_events.c.namespace, audit_events.c.id)
sa.Index("ix_audit_events_action", audit_events.c.action, audit_events.c.id)
sa.Index("ix_audit_events_outcome", audit_events.c.outcome, audit_events.c.id)
# The resource filter is a prefix, queried as a code point range (audit_query.prefix_clause):
# PostgreSQL's text_pattern_ops orders by code point whatever the database collation.
sa.Index("ix_audit_events_resource_id", audit_events.c.resource, audit_events.c.id,
         postgresql_ops={"resource": "text_pattern_ops"})
# (time, id): a time range's first and last ids are one seek each (audit_query.TimeOrder).
sa.Index("ix_audit_events_time_id", audit_events.c.time, audit_events.c.id)

# One row (id = 1): the last appended event. Appenders lock it, which serializes the
# chain across connections and replicas; verify uses it to detect a truncated tail.
audit_chain_head = sa.Table(
    "audit_chain_head",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("last_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.CheckConstraint("id = 1", name="ck_audit_chain_head_single_row"),
)

# Secrets of the deployment, shared by every replica on this database: the page token
# HMAC key ("page-tokens"), created on first connect.
deployment_keys = sa.Table(
    "deployment_keys",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(), nullable=False),
)
