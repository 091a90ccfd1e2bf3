"""Alembic migrations of the fleet's store, run by ``fleet migrate`` (and on first use)."""
