"""History indexes: every audit and operations list filter an index range in page order,
the audit resource prefix a code point range, and a partial index of the unfinished
operations for the reconciler's resync.

Revision ID: 0005_history_indexes
Revises: 0004_observed_resource_version
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_history_indexes"
down_revision: str | None = "0004_observed_resource_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Literal, as in models.UNFINISHED_PREDICATE (a migration must not change with the models).
_UNFINISHED = "state IN ('PENDING', 'RUNNING')"


def upgrade() -> None:
    # Built inside the migration's transaction (CREATE INDEX CONCURRENTLY cannot be): on a
    # large PostgreSQL log, expect writes to wait while they build (about 10 s per million rows).
    op.create_index("ix_audit_events_time_id", "audit_events", ["time", "id"])
    op.drop_index("ix_audit_events_time", table_name="audit_events")
    op.create_index("ix_audit_events_resource_id", "audit_events", ["resource", "id"],
                    postgresql_ops={"resource": "text_pattern_ops"})
    op.drop_index("ix_audit_events_resource", table_name="audit_events")
    for column, old in (("state", "ix_operations_state"), ("type", "ix_operations_type"),
                        ("target_name", "ix_operations_target_name")):
        name = "ix_operations_target_keyset" if column == "target_name" else f"ix_operations_{column}_keyset"
        op.create_index(name, "operations", [column, "create_time", "id"])
        op.drop_index(old, table_name="operations")
    op.create_index("ix_operations_unfinished", "operations", ["create_time", "id"],
                    postgresql_where=sa.text(_UNFINISHED), sqlite_where=sa.text(_UNFINISHED))


def downgrade() -> None:
    op.drop_index("ix_operations_unfinished", table_name="operations")
    for column, old in (("state", "ix_operations_state"), ("type", "ix_operations_type"),
                        ("target_name", "ix_operations_target_name")):
        name = "ix_operations_target_keyset" if column == "target_name" else f"ix_operations_{column}_keyset"
        op.create_index(old, "operations", [column])
        op.drop_index(name, table_name="operations")
    op.create_index("ix_audit_events_resource", "audit_events", ["resource"])
    op.drop_index("ix_audit_events_resource_id", table_name="audit_events")
    op.create_index("ix_audit_events_time", "audit_events", ["time"])
    op.drop_index("ix_audit_events_time_id", table_name="audit_events")
