"""The fleet's tables (SQLAlchemy Core): what the queries read and write.

The migrations in ``migrations/versions`` create exactly these; ``tests/fleet/test_store.py`` compares
the two. Times are Unix seconds (a float): the same type, index and comparison on SQLite and
PostgreSQL, and no time zone to get wrong.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

__all__ = [
    "METADATA",
    "accounts",
    "changes",
    "deliveries",
    "pace_logins",
    "reports",
    "round_accounts",
    "rounds",
    "webhooks",
]

# A 64-bit key on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64-bit (and only it autoincrements).
_Id: Final = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

METADATA: Final = sa.MetaData()

accounts = sa.Table(
    "accounts",
    METADATA,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("address", sa.String(255), nullable=False, unique=True),
    # The payload without its passwords (JSON text), as the report shows the account.
    sa.Column("payload", sa.Text, nullable=False),
    # nonce (12 bytes) + AES-256-GCM ciphertext and tag; the key's id beside them.
    sa.Column("smtp_password", sa.LargeBinary, nullable=False),
    sa.Column("imap_password", sa.LargeBinary, nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
    # OAuth2 logins (NULL: the passwords): the refresh's public part as JSON text (provider,
    # client_id, tenant, token_url); the refresh token and the client secret encrypted like passwords
    # (oauth_refresh_token is the current one: a rotated token replaces it).
    sa.Column("oauth", sa.Text),
    sa.Column("oauth_refresh_token", sa.LargeBinary),
    sa.Column("oauth_client_secret", sa.LargeBinary),
    # The refresh token as `fleet add` last gave it (encrypted): the same line again keeps the stored,
    # perhaps rotated, one.
    sa.Column("oauth_given_token", sa.LargeBinary),
    sa.Column("provider", sa.String(64)),
    sa.Column("interval_s", sa.Integer, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("next_due", sa.Float, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, default="unknown"),
    sa.Column("state_since", sa.Float),
    # The last report that agrees with ``state``: the "before" of the next change.
    sa.Column("state_report_id", sa.BigInteger),
    # A definite failure not confirmed yet: the report that first showed it.
    sa.Column("pending_report_id", sa.BigInteger),
    sa.Column("backoff", sa.Integer, nullable=False, default=0),
    sa.Column("last_report_id", sa.BigInteger),
    sa.Column("last_checked", sa.Float),
    # The top cause of the last report, so that `fleet status` reads one table.
    sa.Column("cause_code", sa.String(128)),
    sa.Column("cause_message", sa.Text),
    # The account's entry of `fleet status --format json`, kept with every change of the fields it
    # shows: the whole fleet's status is then one string concatenation in the database.
    sa.Column("status_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
sa.Index("ix_accounts_due", accounts.c.paused, accounts.c.next_due)
# SQLite reads `fleet status` in address order from this index alone (a scan, not 100,000 lookups);
# PostgreSQL sorts in memory instead, and would refuse index entries over 2.7 kB.
sa.Index("ix_accounts_status", accounts.c.address, accounts.c.status_json).ddl_if(dialect="sqlite")

rounds = sa.Table(
    "rounds",
    METADATA,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("planned", sa.Integer, nullable=False),
)

round_accounts = sa.Table(
    "round_accounts",
    METADATA,
    sa.Column("round_id", sa.BigInteger, sa.ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "account_id", sa.BigInteger, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
)

reports = sa.Table(
    "reports",
    METADATA,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("round_id", sa.BigInteger, sa.ForeignKey("rounds.id", ondelete="SET NULL")),
    sa.Column("checked_at", sa.Float, nullable=False),
    sa.Column("verdict", sa.String(8), nullable=False),
    # The fleet's state after this report (pass, warn, degraded, broken, unknown).
    sa.Column("state", sa.String(16), nullable=False),
    # The codes of the findings that matter (warn, fail, error), space-separated.
    sa.Column("codes", sa.Text, nullable=False),
    # The scrubbed report as zlib-compressed JSON.
    sa.Column("body", sa.LargeBinary, nullable=False),
    # One report per account per round, whatever interrupts the round.
    sa.UniqueConstraint("account_id", "round_id", name="uq_reports_account_round"),
)
sa.Index("ix_reports_account_time", reports.c.account_id, reports.c.checked_at)
sa.Index("ix_reports_time", reports.c.checked_at)

changes = sa.Table(
    "changes",
    METADATA,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("from_state", sa.String(16), nullable=False),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("before_report_id", sa.BigInteger),
    sa.Column("after_report_id", sa.BigInteger),
    sa.Column("event_id", sa.String(40), nullable=False, unique=True),
    sa.Column("event_type", sa.String(32)),
    # {"appeared": [...], "disappeared": [...], "evidence": [...]} as JSON text.
    sa.Column("diff", sa.Text, nullable=False),
)
sa.Index("ix_changes_at", changes.c.at)
sa.Index("ix_changes_account_at", changes.c.account_id, changes.c.at)

webhooks = sa.Table(
    "webhooks",
    METADATA,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("url", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    METADATA,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("change_id", sa.BigInteger, sa.ForeignKey("changes.id", ondelete="CASCADE"), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    # pending, delivered, failed (gave up: retries exhausted)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", sa.Float),
    # The sender that claimed it (webhooks.deliver) and until when, on the database's clock: one
    # sender at a time; a claim whose sender died runs out, and the delivery is taken again.
    sa.Column("claimed_by", sa.String(80)),
    sa.Column("claimed_until", sa.Float),
    sa.UniqueConstraint("change_id", "url", name="uq_deliveries_change_url"),
)
sa.Index("ix_deliveries_due", deliveries.c.status, deliveries.c.next_attempt_at)

# The logins of the last minute per paced provider, shared by every worker of a PostgreSQL fleet
# (fleet/pace.py's SharedPace; unused on SQLite, whose one process paces itself in memory). Times
# are the database's clock, so workers on machines with skewed clocks agree.
pace_logins = sa.Table(
    "pace_logins",
    METADATA,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("provider", sa.String(160), nullable=False),
    # The database session (pg_backend_pid) that holds the login: a login whose session is gone
    # (its worker killed) is ended when the next one looks.
    sa.Column("holder", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
)
sa.Index("ix_pace_logins_provider", pace_logins.c.provider, pace_logins.c.ended_at)
