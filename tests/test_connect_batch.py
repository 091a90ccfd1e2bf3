"""connect --batch: only accounts that passed are created; each exactly once, across resumes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from inboxcheck._options import CheckOptions, Family
from inboxcheck.cli import cli
from inboxcheck.platform.batch import connect_batch, idempotency_key
from inboxcheck.platform.client import PlatformClient
from inboxcheck.platform.key import ApiKey
from lab.api_double import ApiDouble
from tests.helpers import CANARY, batch_user, write_jsonl

KEY = "cs_test_" + "b" * 24
OFFLINE = CheckOptions(families=frozenset({Family.ACCOUNT}))


def _file(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", rows)


def _lines(path: Path, kind: str) -> list[dict[str, Any]]:
    """The check lines, or the create lines with an answer (not those written before sending)."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if kind == "create":
        return [r for r in records if r.get("kind") == "create" and r["state"] == "answered"]
    return [r for r in records if r.get("kind") is None]


async def test_only_passing_accounts_are_created_and_a_resume_creates_nothing_twice(tmp_path: Path) -> None:
    rows = [batch_user(1), batch_user(2, imap_port=143), batch_user(3, daily_limit=...), batch_user(4)]
    path, output = _file(tmp_path, rows), tmp_path / "out.jsonl"
    async with ApiDouble(keys={KEY}) as api:
        async with PlatformClient(ApiKey.parse(KEY), base_url=api.url) as client:
            summary = await connect_batch(path, output=output, client=client, options=OFFLINE, env={})
            assert summary.creates == Counter({"created": 3})
            assert summary.blocked == 1 and summary.exit_code == 1
            again = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, env={}
            )
            assert again.creates == Counter()
        assert sorted(r.body["email_address"] for r in api.creates() if r.body) == [
            "user1@example.test",
            "user3@example.test",
            "user4@example.test",
        ]
    creates = _lines(output, "create")
    assert sorted(c["line"] for c in creates) == [1, 3, 4]
    assert {c["daily_limit"] for c in creates if c["line"] == 3} == {30}
    assert len(_lines(output, "check")) == 4
    assert CANARY not in output.read_text(encoding="utf-8")


async def test_bulk_sends_one_call_per_hundred(tmp_path: Path) -> None:
    rows = [batch_user(i) for i in range(150)]
    path, output = _file(tmp_path, rows), tmp_path / "out.jsonl"
    async with ApiDouble(keys={KEY}) as api:
        async with PlatformClient(ApiKey.parse(KEY), base_url=api.url) as client:
            summary = await connect_batch(
                path, output=output, client=client, options=OFFLINE, bulk=True, env={}
            )
        bulk_calls = [r for r in api.log if r.path.endswith("/bulk")]
        assert len(bulk_calls) == 2
        assert len(api.accounts) == 150
    assert summary.creates == Counter({"created": 150})
    assert len({c["line"] for c in _lines(output, "create")}) == 150


def test_idempotency_keys_are_stable_per_account() -> None:
    assert idempotency_key("u", "d1") == idempotency_key("u", "d1")
    assert idempotency_key("u", "d1") != idempotency_key("u", "d2")
    assert idempotency_key("u", "d1") != idempotency_key("v", "d1")


def test_cli_connect_batch(tmp_path: Path) -> None:
    path = _file(tmp_path, [batch_user(1), batch_user(2, smtp_port=465, smtp_use_tls=False)])
    output = tmp_path / "out.jsonl"
    with ApiDouble(keys={KEY}).running_in_thread() as api:
        result = CliRunner().invoke(
            cli,
            [
                "connect",
                "--batch",
                str(path),
                "--output",
                str(output),
                "--only",
                "account",
                "--api-url",
                api.url,
            ],
            env={"COLDSEND_API_KEY": KEY},
            catch_exceptions=False,
        )
        assert len(api.creates()) == 1
    assert result.exit_code == 1, result.output
    assert "created line 1 user1@example.test" in result.stdout
    assert "created 1 inbox(es)" in result.stderr and "1 blocked" in result.stderr
    assert KEY not in result.output and CANARY not in result.output
    refused = CliRunner().invoke(
        cli, ["connect", "--batch", str(path), "--dry-run"], env={"COLDSEND_API_KEY": KEY}
    )
    assert refused.exit_code == 2


async def test_a_log_without_the_recommendation_sends_what_a_single_connect_would(tmp_path: Path) -> None:
    """The daily limit comes from the account's own report, findings included, never a bare default."""
    from inboxcheck._batch import run_batch
    from inboxcheck._check import CheckContext, CheckSpec, Outcome
    from inboxcheck._models import Severity

    async def unsigned(ctx: CheckContext) -> Outcome:
        out = Outcome(summary="no DKIM key")
        out.add("dns.dkim.missing", Severity.WARN, "no DKIM key was found")
        return out

    specs = [CheckSpec("test.dkim", "DKIM", Family.ACCOUNT, unsigned)]
    path, output = _file(tmp_path, [batch_user(1, daily_limit=...)]), tmp_path / "out.jsonl"
    await run_batch(path, options=OFFLINE, output=output, env={}, specs=specs)
    header, record = (json.loads(line) for line in output.read_text(encoding="utf-8").splitlines())
    assert record["report"]["recommended_daily_limit"]["value"] == 15  # 30 for a new mailbox, halved
    del record["report"]["recommended_daily_limit"]
    output.write_text(json.dumps(header) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    async with ApiDouble(keys={KEY}) as api:
        async with PlatformClient(ApiKey.parse(KEY), base_url=api.url) as client:
            summary = await connect_batch(
                path, output=output, client=client, options=OFFLINE, resume=True, env={}, specs=specs
            )
        assert summary.creates == Counter({"created": 1})
        (sent,) = api.creates()
        assert sent.body["daily_limit"] == 15
