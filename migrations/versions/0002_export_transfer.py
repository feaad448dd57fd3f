"""Operations of exports record what they moved: ``operations.transfer`` (JSON, nullable),
and the content tag of an export whose whole-image digest is known (indexed).

Revision ID: 0002_export_transfer
Revises: 0001_initial
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_export_transfer"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable with no default: adding it rewrites no rows (instant on PostgreSQL).
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("transfer", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("export_etag", sa.String(), nullable=True))
    op.create_index("ix_operations_export_etag", "operations", ["export_etag"])


def downgrade() -> None:
    op.drop_index("ix_operations_export_etag", table_name="operations")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("export_etag")
        batch.drop_column("transfer")
