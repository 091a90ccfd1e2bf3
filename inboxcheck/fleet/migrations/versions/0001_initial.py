"""The fleet's first schema: accounts, rounds, reports, changes, webhooks, deliveries.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(255), nullable=False, unique=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("smtp_password", sa.LargeBinary, nullable=False),
        sa.Column("imap_password", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(64)),
        sa.Column("interval_s", sa.Integer, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("next_due", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_since", sa.Float),
        sa.Column("state_report_id", sa.BigInteger),
        sa.Column("pending_report_id", sa.BigInteger),
        sa.Column("backoff", sa.Integer, nullable=False),
        sa.Column("last_report_id", sa.BigInteger),
        sa.Column("last_checked", sa.Float),
        sa.Column("cause_code", sa.String(128)),
        sa.Column("cause_message", sa.Text),
        sa.Column("status_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_accounts_due", "accounts", ["paused", "next_due"])
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_accounts_status", "accounts", ["address", "status_json"])
    op.create_table(
        "rounds",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("planned", sa.Integer, nullable=False),
    )
    op.create_table(
        "round_accounts",
        sa.Column(
            "round_id", sa.BigInteger, sa.ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "account_id", sa.BigInteger, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
        ),
    )
    op.create_table(
        "reports",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column(
            "account_id", sa.BigInteger, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("round_id", sa.BigInteger, sa.ForeignKey("rounds.id", ondelete="SET NULL")),
        sa.Column("checked_at", sa.Float, nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("codes", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("account_id", "round_id", name="uq_reports_account_round"),
    )
    op.create_index("ix_reports_account_time", "reports", ["account_id", "checked_at"])
    op.create_index("ix_reports_time", "reports", ["checked_at"])
    op.create_table(
        "changes",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column(
            "account_id", sa.BigInteger, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("before_report_id", sa.BigInteger),
        sa.Column("after_report_id", sa.BigInteger),
        sa.Column("event_id", sa.String(40), nullable=False, unique=True),
        sa.Column("event_type", sa.String(32)),
        sa.Column("diff", sa.Text, nullable=False),
    )
    op.create_index("ix_changes_at", "changes", ["at"])
    op.create_index("ix_changes_account_at", "changes", ["account_id", "at"])
    op.create_table(
        "webhooks",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("url", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column(
            "change_id", sa.BigInteger, sa.ForeignKey("changes.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", sa.Float),
        sa.UniqueConstraint("change_id", "url", name="uq_deliveries_change_url"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])


def downgrade() -> None:
    for table in ("deliveries", "webhooks", "changes", "reports", "round_accounts", "rounds", "accounts"):
        op.drop_table(table)
