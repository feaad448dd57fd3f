"""Operations remember the resourceVersion of the last resource state they applied, so a
stale read (an informer cache behind the API) never steps a timeline back.

Revision ID: 0004_observed_resource_version
Revises: 0003_deployment_keys
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_observed_resource_version"
down_revision: str | None = "0003_deployment_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable with no default: no row is rewritten.
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("observed_resource_version", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("observed_resource_version")
