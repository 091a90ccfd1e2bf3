"""The fleet: a store of accounts, scheduled re-checks, every report kept, changes explained.

Needs the ``fleet`` extra (SQLAlchemy, Alembic, aiosqlite, psycopg, cryptography). The store's
functions (:mod:`inboxcheck.fleet.store`) are async and take an engine
(:func:`inboxcheck.fleet._db.connect`), so the CLI, a server and queue workers share them.
"""

from __future__ import annotations

__all__: list[str] = []
