"""Secrets of the deployment shared by every replica on the database: the HMAC key of
page tokens (``deployment_keys``; the row is created on first connect).

Revision ID: 0003_deployment_keys
Revises: 0002_export_transfer
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_deployment_keys"
down_revision: str | None = "0002_export_transfer"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deployment_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deployment_keys")
