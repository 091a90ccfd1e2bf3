"""The fleet's store on a real SQLite file and a real PostgreSQL server, through the same tests."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from inboxcheck._models import Account, Report, Verdict
from inboxcheck._oauth import RefreshRequest
from inboxcheck._options import CheckOptions, Family
from inboxcheck._runner import run_checks
from inboxcheck._secrets import Scrubber
from inboxcheck.fleet import store
from inboxcheck.fleet._crypto import FleetKey, FleetKeyError, WrongKeyError, load_key, new_key_text
from inboxcheck.fleet._db import HEAD, async_url, connect, migrate, schema_state
from inboxcheck.fleet._schema import METADATA, accounts
from inboxcheck.fleet.changes import Schedule
from lab.postgres import PG_BIN, Postgres
from tests.helpers import CANARY, batch_user, custom_payload

KEY = FleetKey(b"k" * 32)
OTHER = FleetKey(b"o" * 32)
NOW = 1_800_000_000.0
OFFLINE = CheckOptions(families=frozenset({Family.ACCOUNT}))


def _accounts(n: int) -> list[Account]:
    return [Account.model_validate(batch_user(i)) for i in range(n)]


async def _report(account: Account, **changes: Any) -> Report:
    report = await run_checks(account, options=OFFLINE)
    return report.model_copy(update=changes) if changes else report


async def _record(
    engine: Any, account_id: int, account: Account, report: Report, now: float, round_id: int | None = None
) -> Any:
    return await store.record_report(
        engine,
        account_id=account_id,
        round_id=round_id,
        report=report,
        scrub=Scrubber.for_account(account),
        now=now,
        schedule=Schedule(interval=3600),
        webhook_urls=["http://127.0.0.1:9/hook"],
    )


def _failed(report: Report, code: str = "smtp.auth.rejected") -> Report:
    """``report`` with a definite SMTP failure, its reply as evidence."""
    from inboxcheck._models import CheckResult, Severity, Status, finding

    failing = CheckResult(
        name="smtp.login",
        title="SMTP login",
        status=Status.FAIL,
        summary="refused",
        duration_ms=1,
        findings=(finding(code, Severity.FAIL, "The server refused the password.", reply="535 5.7.8 no"),),
    )
    checks = (*report.checks, failing)
    return report.model_copy(update={"checks": checks, "verdict": Verdict.FAIL})


def test_user_urls_map_to_the_async_drivers() -> None:
    assert async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_url("postgresql://u:p@h:5/d") == "postgresql+psycopg://u:p@h:5/d"
    assert async_url("postgres://h/d").startswith("postgresql+psycopg://")


@pytest.mark.parametrize("url", ["mysql://h/d", "sqlite://", "not a url"])
def test_unsupported_urls_are_refused_with_what_works(url: str) -> None:
    from inboxcheck.fleet._db import FleetDbError

    with pytest.raises(FleetDbError, match=r"sqlite:///"):
        async_url(url)


def test_the_tables_match_the_migration(fleet_db: str) -> None:
    import asyncio

    async def compare() -> None:
        engine = await connect(fleet_db)
        try:
            assert await schema_state(engine) == HEAD
            assert await migrate(engine) == (HEAD, HEAD)  # a second migrate changes nothing

            def names(conn: sa.Connection) -> dict[str, set[str]]:
                inspector = sa.inspect(conn)
                return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}

            async with engine.connect() as conn:
                found = await conn.run_sync(names)
            for table in METADATA.sorted_tables:
                assert found[table.name] == {c.name for c in table.columns}, table.name
        finally:
            await engine.dispose()

    asyncio.run(compare())


def test_keys_come_from_the_environment_or_a_file_and_are_refused_clearly(tmp_path: Path) -> None:
    text = new_key_text()
    assert len(base64.b64decode(text)) == 32
    assert load_key(env={"INBOXCHECK_FLEET_KEY": text}).secret == base64.b64decode(text)
    with pytest.raises(FleetKeyError, match="INBOXCHECK_FLEET_KEY"):
        load_key(env={})
    with pytest.raises(FleetKeyError, match="16 bytes"):
        load_key(env={"INBOXCHECK_FLEET_KEY": base64.b64encode(b"x" * 16).decode()})
    path = tmp_path / "key"
    path.write_text(text + "\n")
    assert load_key(key_file=path, env={}).id == load_key(env={"INBOXCHECK_FLEET_KEY": text}).id
    assert KEY.secret.decode() not in repr(KEY)


def test_a_ciphertext_opens_only_in_its_own_row_and_field() -> None:
    blob = KEY.encrypt("a@x.test", "smtp_password", CANARY)
    assert KEY.decrypt("a@x.test", "smtp_password", blob) == CANARY
    assert KEY.decrypt("b@x.test", "smtp_password", blob) is None
    assert KEY.decrypt("a@x.test", "imap_password", blob) is None
    assert OTHER.decrypt("a@x.test", "smtp_password", blob) is None
    assert KEY.encrypt("a@x.test", "smtp_password", CANARY) != blob  # a fresh nonce each time


REFRESH_CANARY = "Refresh-canary-1/Zq_8Kp"
SECRET_CANARY = "Client-secret-canary-5Wd"
ROTATED_CANARY = "Rotated-canary-3Lm_9Tz"


def _refresh(token: str = REFRESH_CANARY) -> RefreshRequest:
    return RefreshRequest(
        provider="microsoft",
        client_id="app-1",
        refresh_token=SecretStr(token),
        client_secret=SecretStr(SECRET_CANARY),
        tenant="contoso.example",
        token_url="http://127.0.0.1:9/token",
    )


async def test_accounts_upsert_by_address_and_their_passwords_stay_encrypted(
    engine: Any, fleet_db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    first = await store.add_accounts(engine, _accounts(3), key=KEY, interval=3600, now=NOW)
    assert first.added == [f"user{i}@example.test" for i in range(3)] and first.updated == []
    again = await store.add_accounts(engine, _accounts(2), key=KEY, interval=7200, now=NOW)
    assert again.updated == ["user0@example.test", "user1@example.test"]
    same = await store.add_accounts(engine, _accounts(2), key=KEY, interval=7200, now=NOW)
    assert same.unchanged == ["user0@example.test", "user1@example.test"] and same.updated == []
    changed = [Account.model_validate(batch_user(0, smtp_password="Another-pw-991"))]
    assert (await store.add_accounts(engine, changed, key=KEY, interval=7200, now=NOW)).updated == [
        "user0@example.test"
    ]
    listed = await store.list_accounts(engine)
    assert [row["interval_s"] for row in listed] == [7200, 7200, 3600]
    loaded = await store.load_accounts(engine, [1, 2, 3], key=KEY)
    assert [a.smtp_password.get_secret_value() for _, a in loaded] == ["Another-pw-991", CANARY, CANARY]
    # An OAuth2 account: its refresh token and client secret are stored as its passwords are, and a
    # rotated refresh token replaces the stored one, encrypted too.
    oauth = {"user2@example.test": _refresh()}
    assert (
        await store.add_accounts(engine, _accounts(3), key=KEY, interval=7200, now=NOW, oauth=oauth)
    ).updated
    refresh: dict[int, Any] = {}
    [(_, account)] = await store.load_accounts(engine, [3], key=KEY, refresh=refresh)
    assert account.uses_tokens and refresh[3].request == _refresh()
    assert await store.save_refresh_token(
        engine,
        3,
        address="user2@example.test",
        token=SecretStr(ROTATED_CANARY),
        replaces=refresh[3].stored,
        key=KEY,
        now=NOW,
    )
    # A second save against the old ciphertext changes nothing: the rotated token stands.
    assert not await store.save_refresh_token(
        engine,
        3,
        address="user2@example.test",
        token=SecretStr("x" * 20),
        replaces=refresh[3].stored,
        key=KEY,
        now=NOW,
    )
    await store.load_accounts(engine, [3], key=KEY, refresh=refresh)
    assert refresh[3].request.refresh_token.get_secret_value() == ROTATED_CANARY
    # The same file added again keeps the rotated token (the one it gives may be retired by now); a
    # line with another refresh token (the user signed in again) replaces it.
    again = await store.add_accounts(engine, _accounts(3), key=KEY, interval=7200, now=NOW, oauth=oauth)
    assert again.unchanged == [f"user{i}@example.test" for i in range(3)]
    await store.load_accounts(engine, [3], key=KEY, refresh=refresh)
    assert refresh[3].request.refresh_token.get_secret_value() == ROTATED_CANARY
    renamed = [*_accounts(2), Account.model_validate(batch_user(2, display_name="Renamed"))]
    assert (await store.add_accounts(engine, renamed, key=KEY, interval=7200, now=NOW, oauth=oauth)).updated
    await store.load_accounts(engine, [3], key=KEY, refresh=refresh)
    assert refresh[3].request.refresh_token.get_secret_value() == ROTATED_CANARY
    fresh = {"user2@example.test": _refresh("Signed-in-again-token-1")}
    assert (await store.add_accounts(engine, renamed, key=KEY, interval=7200, now=NOW, oauth=fresh)).updated
    await store.load_accounts(engine, [3], key=KEY, refresh=refresh)
    assert refresh[3].request.refresh_token.get_secret_value() == "Signed-in-again-token-1"
    # Nothing of the password, the refresh tokens or the client secret, in any encoding, is in the
    # stored bytes.
    dump = _stored_bytes(fleet_db, request)
    assert b"contoso.example" in dump  # the refresh's public part is
    for secret in (
        CANARY,
        "Another-pw-991",
        REFRESH_CANARY,
        SECRET_CANARY,
        ROTATED_CANARY,
        "Signed-in-again-token-1",
    ):
        for form in (secret, base64.b64encode(secret.encode()).decode(), secret.encode().hex()):
            assert form.encode() not in dump
    for form in (CANARY, base64.b64encode(CANARY.encode()).decode(), CANARY.encode().hex()):
        assert form.encode() not in dump
    assert b"user0@example.test" in dump  # the dump is of the right database


def _stored_bytes(fleet_db: str, request: pytest.FixtureRequest) -> bytes:
    if fleet_db.startswith("sqlite"):
        path = Path(fleet_db.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    server: Postgres = request.getfixturevalue("postgres")
    database = fleet_db.rsplit("/", 1)[1]
    return subprocess.run(
        server.command(
            str(PG_BIN / "pg_dump"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", database
        ),
        check=True,
        capture_output=True,
    ).stdout


async def test_a_wrong_key_names_the_accounts_and_opens_or_changes_nothing(engine: Any) -> None:
    await store.add_accounts(engine, _accounts(2), key=KEY, interval=3600, now=NOW)
    async with engine.connect() as conn:
        before = (await conn.execute(sa.select(accounts.c.smtp_password))).all()
    with pytest.raises(WrongKeyError, match=r"user0@example\.test, user1@example\.test") as caught:
        await store.load_accounts(engine, [1, 2], key=OTHER)
    assert CANARY not in str(caught.value)
    with pytest.raises(WrongKeyError):
        await store.add_accounts(engine, _accounts(1), key=OTHER, interval=3600, now=NOW)
    with pytest.raises(WrongKeyError):
        await store.rekey(engine, old=OTHER, new=KEY, now=NOW)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(accounts.c.smtp_password))).all() == before


async def test_rekey_reencrypts_every_account_under_the_new_key(engine: Any) -> None:
    oauth = {"user1@example.test": _refresh()}
    await store.add_accounts(engine, _accounts(3), key=KEY, interval=3600, now=NOW, oauth=oauth)
    assert await store.rekey(engine, old=KEY, new=OTHER, now=NOW) == 3
    refresh: dict[int, Any] = {}
    loaded = await store.load_accounts(engine, [1, 2, 3], key=OTHER, refresh=refresh)
    assert {a.imap_password.get_secret_value() for _, a in loaded} == {CANARY}
    assert list(refresh) == [2] and refresh[2].request == _refresh()
    with pytest.raises(WrongKeyError):
        await store.load_accounts(engine, [1], key=KEY)


async def test_one_report_per_account_per_round_whatever_records_it_twice(engine: Any) -> None:
    [account] = _accounts(1)
    await store.add_accounts(engine, [account], key=KEY, interval=3600, now=NOW)
    plan = await store.begin_round(engine, all_accounts=False, now=NOW)
    assert plan is not None and plan.remaining == (1,) and not plan.resumed
    report = await _report(account)
    assert await _record(engine, 1, account, report, NOW, plan.round_id) is not None
    assert await _record(engine, 1, account, report, NOW + 1, plan.round_id) is None
    assert len(await store.history(engine, account.email_address)) == 1
    assert await store.finish_round(engine, plan.round_id, now=NOW)
    # Checked an hour ahead: nothing is due now; --all makes a new round all the same.
    assert await store.begin_round(engine, all_accounts=False, now=NOW + 10) is None
    assert await store.begin_round(engine, all_accounts=True, now=NOW + 10) is not None


async def test_an_unfinished_round_is_resumed_with_what_is_left(engine: Any) -> None:
    items = _accounts(3)
    await store.add_accounts(engine, items, key=KEY, interval=3600, now=NOW)
    plan = await store.begin_round(engine, all_accounts=False, now=NOW)
    assert plan is not None
    await _record(engine, 2, items[1], await _report(items[1]), NOW, plan.round_id)
    assert not await store.finish_round(engine, plan.round_id, now=NOW)
    resumed = await store.begin_round(engine, all_accounts=True, now=NOW + 5)
    assert resumed is not None and resumed.resumed and resumed.round_id == plan.round_id
    assert resumed.remaining == (1, 3)


async def test_a_confirmed_failure_is_a_change_with_its_evidence_and_a_delivery(engine: Any) -> None:
    [account] = _accounts(1)
    await store.add_accounts(engine, [account], key=KEY, interval=3600, now=NOW)
    good = await _report(account)
    bad = _failed(good)
    first = await _record(engine, 1, account, good, NOW)
    assert first.change is not None and first.change["type"] is None  # unknown -> pass: no event
    assert (await _record(engine, 1, account, bad, NOW + 10)).change is None  # suspected only
    confirmed = await _record(engine, 1, account, bad, NOW + 320)
    assert confirmed.change is not None and confirmed.change["type"] == "inbox.broken"
    assert len(confirmed.deliveries) == 1
    [status] = await store.status(engine)
    assert status["verdict"] == "broken"
    assert status["cause"]["code"] == "smtp.auth.rejected"
    assert status["since"] == datetime.fromtimestamp(NOW + 320, UTC).isoformat().replace("+00:00", "Z")
    changes = await store.change_list(engine, since=NOW + 1)
    [change] = changes
    assert change["from"] == "pass" and change["to"] == "broken"
    assert change["appeared"] == ["smtp.auth.rejected"]
    assert {"what": "smtp.login:smtp.auth.rejected.reply", "before": None, "after": "535 5.7.8 no"} in change[
        "evidence"
    ]
    recovered = await _record(engine, 1, account, good, NOW + 4000)
    assert recovered.change is not None and recovered.change["type"] == "inbox.recovered"
    assert [c["to"] for c in await store.change_list(engine)] == ["pass", "broken", "pass"]


async def test_prune_keeps_every_change_and_the_reports_around_it(engine: Any) -> None:
    [account] = _accounts(1)
    await store.add_accounts(engine, [account], key=KEY, interval=3600, now=NOW)
    good = await _report(account)
    bad = _failed(good)
    day = 86_400
    verdicts = [good] * 5 + [bad, bad] + [good] * 5
    for n, report in enumerate(verdicts):
        await _record(engine, 1, account, report, NOW + n * day)
    history = await store.history(engine, account.email_address, limit=100)
    assert len(history) == 12
    deleted = await store.prune(engine, keep_days=1.5, now=NOW + 11 * day)
    left = await store.history(engine, account.email_address, limit=100)
    assert deleted == 12 - len(left) and deleted > 0
    kept = {row["report_id"] for row in left}
    for change in await store.change_list(engine):
        assert change["evidence"] is not None
    async with engine.connect() as conn:
        from inboxcheck.fleet._schema import changes

        pointed = {
            rid
            for row in await conn.execute(sa.select(changes.c.before_report_id, changes.c.after_report_id))
            for rid in row
            if rid is not None
        }
    assert pointed <= kept


async def test_status_history_and_unknown_addresses(engine: Any) -> None:
    with pytest.raises(store.UnknownAccountError, match=r"nobody@example\.test"):
        await store.history(engine, "nobody@example.test")
    with pytest.raises(store.UnknownAccountError):
        await store.set_paused(engine, "nobody@example.test", True, now=NOW)
    await store.add_accounts(engine, _accounts(2), key=KEY, interval=3600, now=NOW)
    await store.set_paused(engine, "USER1@example.test", True, now=NOW)
    plan = await store.begin_round(engine, all_accounts=True, now=NOW)
    assert plan is not None and plan.remaining == (1,)
    await store.remove_account(engine, "user0@example.test")
    assert [row["email_address"] for row in await store.status(engine)] == ["user1@example.test"]


async def test_the_status_document_is_valid_json_in_byte_order_on_both_stores(engine: Any) -> None:
    addresses = ["zed@example.test", "ábel@example.test", "amy@example.test", "Bob@example.test"]
    items = [
        Account.model_validate(custom_payload(email_address=a, smtp_username=a, imap_username=a))
        for a in addresses
    ]
    await store.add_accounts(engine, items, key=KEY, interval=3600, now=NOW)
    report = _failed(await _report(items[0]))
    cause = report.checks[-1].findings[0].model_copy(update={"message": 'A "quoted"\nreply, \\ and ünïcode'})
    failing = report.checks[-1].model_copy(update={"findings": (cause,)})
    await _record(
        engine, 1, items[0], report.model_copy(update={"checks": (*report.checks[:-1], failing)}), NOW
    )
    document = json.loads(await store.status_document(engine))
    order = [row["email_address"] for row in document["accounts"]]
    assert order == sorted((a.lower() for a in addresses), key=str.encode)
    [zed] = [row for row in document["accounts"] if row["email_address"] == "zed@example.test"]
    assert zed["cause"] == {"code": "smtp.auth.rejected", "message": 'A "quoted"\nreply, \\ and ünïcode'}
    assert document["accounts"] == await store.status(engine)


async def test_one_group_may_hold_one_account_twice_and_the_second_sees_the_first(engine: Any) -> None:
    [account] = _accounts(1)
    await store.add_accounts(engine, [account], key=KEY, interval=3600, now=NOW)
    bad = _failed(await _report(account))
    entries = [store.ReportEntry(1, None, bad, str, NOW + n) for n in range(2)]
    first, second = await store.record_reports(engine, entries)
    assert first is not None and first.change is None  # suspected
    assert second is not None and second.change is not None and second.change["type"] == "inbox.broken"
    assert [row["state"] for row in await store.history(engine, account.email_address)] == [
        "broken",
        "unknown",
    ]


async def test_sqlite_transactions_of_two_processes_read_and_write_as_one(tmp_path: Path) -> None:
    """Two engines on one SQLite file, as two processes: while one holds a write transaction, the
    other's begin_round and record_reports wait for it and then read what it wrote (the driver's
    own transactions would read before waiting: a second round, a report recorded twice)."""
    import asyncio

    from inboxcheck.fleet._schema import reports, round_accounts, rounds

    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    first, second = await connect(url), await connect(url)
    try:
        [account] = _accounts(1)
        await store.add_accounts(first, [account], key=KEY, interval=3600, now=NOW)
        report = await _report(account)
        async with first.begin() as conn:
            # The first process opens a round, unseen until it commits.
            await conn.execute(rounds.insert().values(id=7, started_at=NOW, planned=1))
            await conn.execute(round_accounts.insert().values(round_id=7, account_id=1))
            planning = asyncio.ensure_future(store.begin_round(second, all_accounts=True, now=NOW))
            await asyncio.sleep(0.5)
            assert not planning.done()
        plan = await planning
        assert plan is not None and plan.resumed and plan.round_id == 7 and plan.remaining == (1,)

        async with first.begin() as conn:
            # ...and records the account's report in it, while the second records one too.
            await conn.execute(
                reports.insert().values(
                    account_id=1, round_id=7, checked_at=NOW, verdict="pass", state="pass", codes="", body=b""
                )
            )
            recording = asyncio.ensure_future(_record(second, 1, account, report, NOW, 7))
            await asyncio.sleep(0.5)
            assert not recording.done()
        assert await recording is None
        async with second.connect() as conn:
            assert (await conn.execute(sa.select(sa.func.count()).select_from(rounds))).scalar_one() == 1
            assert (await conn.execute(sa.select(sa.func.count()).select_from(reports))).scalar_one() == 1
    finally:
        await first.dispose()
        await second.dispose()
