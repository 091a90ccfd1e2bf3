"""The logins of the last minute per paced provider, shared by the workers of a PostgreSQL fleet.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pace_logins",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(160), nullable=False),
        sa.Column("holder", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
    )
    op.create_index("ix_pace_logins_provider", "pace_logins", ["provider", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_pace_logins_provider", table_name="pace_logins")
    op.drop_table("pace_logins")
