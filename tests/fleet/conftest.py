"""The fleet's stores for tests: a real SQLite file, and a real PostgreSQL server started here.

The PostgreSQL cluster is throwaway (``initdb`` in a temporary directory, as the ``postgres`` user
when the tests run as root, a free loopback port, a socket in that directory); each test gets its
own database in it. Nothing system-wide is started or changed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lab.postgres import Postgres, throwaway_postgres
from tests.fleet.receiver import Receiver


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throwaway PostgreSQL cluster for the session."""
    try:
        cluster = throwaway_postgres()
        server = cluster.__enter__()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        cluster.__exit__(None, None, None)


def _create_database(server: Postgres) -> str:
    import psycopg

    name = f"fleet_{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            return name
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty fleet database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    server: Postgres = request.getfixturevalue("postgres")
    return server.url(_create_database(server))


@pytest.fixture
async def engine(fleet_db: str) -> AsyncIterator[object]:
    from inboxcheck.fleet._db import connect

    engine = await connect(fleet_db)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()
