"""Operations of exports record what they moved: ``operations.transfer`` (JSON, nullable).

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


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("transfer")
