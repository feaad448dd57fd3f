"""Initial schema: operations, their transitions, and the hash-chained audit log.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.store.models import UtcDateTime

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64
# SQLite only has 64-bit INTEGER; an INTEGER PRIMARY KEY there is the rowid.
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# PostgreSQL: the audit log is append-only even for someone holding the app's password.
_APPEND_ONLY_FUNCTION = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only (% rejected)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""
_APPEND_ONLY_TRIGGERS = (
    "CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()",
)


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(), nullable=False),
        sa.Column("target_api_version", sa.String(), nullable=False),
        sa.Column("target_kind", sa.String(), nullable=False),
        sa.Column("target_name", sa.String(), nullable=False),
        sa.Column("target_namespace", sa.String(), nullable=False),
        sa.Column("target_uid", sa.String(), nullable=False),
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
    )
    op.create_index("ix_operations_keyset", "operations", ["create_time", "id"])
    op.create_index("ix_operations_namespace_keyset", "operations", ["namespace", "create_time", "id"])
    op.create_index("ix_operations_actor_keyset", "operations", ["actor", "create_time", "id"])
    op.create_index("ix_operations_state", "operations", ["state"])
    op.create_index("ix_operations_type", "operations", ["type"])
    op.create_index("ix_operations_target_name", "operations", ["target_name"])
    # Idempotency: one operation per (actor, request_id); operations without a key are free.
    op.create_index("uq_operations_actor_request_id", "operations", ["actor", "request_id"], unique=True,
                    postgresql_where=sa.text("request_id IS NOT NULL"),
                    sqlite_where=sa.text("request_id IS NOT NULL"))

    op.create_table(
        "operation_transitions",
        sa.Column("operation_id", sa.String(64), sa.ForeignKey("operations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("time", UtcDateTime(), nullable=False),
    )

    op.create_table(
        "audit_events",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=False),
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
    op.create_index("ix_audit_events_actor", "audit_events", ["actor", "id"])
    op.create_index("ix_audit_events_namespace", "audit_events", ["namespace", "id"])
    op.create_index("ix_audit_events_action", "audit_events", ["action", "id"])
    op.create_index("ix_audit_events_outcome", "audit_events", ["outcome", "id"])
    op.create_index("ix_audit_events_resource", "audit_events", ["resource"])
    op.create_index("ix_audit_events_time", "audit_events", ["time"])

    chain_head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_id", BIGINT, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_chain_head_single_row"),
    )
    op.bulk_insert(chain_head, [{"id": 1, "last_id": 0, "last_hash": GENESIS_HASH}])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_APPEND_ONLY_FUNCTION)
        for statement in _APPEND_ONLY_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update_delete ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    op.drop_table("audit_chain_head")
    op.drop_table("audit_events")
    op.drop_table("operation_transitions")
    op.drop_table("operations")
