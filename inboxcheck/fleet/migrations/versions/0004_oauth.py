"""OAuth2 logins for stored accounts: the refresh's public part, the refresh token (the current one
and the one last given by `fleet add`) and the client secret, encrypted like the passwords.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch_alter_table: SQLite adds columns in place; the same code on PostgreSQL is plain ALTERs.
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("oauth", sa.Text))
        batch.add_column(sa.Column("oauth_refresh_token", sa.LargeBinary))
        batch.add_column(sa.Column("oauth_client_secret", sa.LargeBinary))
        batch.add_column(sa.Column("oauth_given_token", sa.LargeBinary))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("oauth_given_token")
        batch.drop_column("oauth_client_secret")
        batch.drop_column("oauth_refresh_token")
        batch.drop_column("oauth")
