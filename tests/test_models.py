from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from inboxcheck._models import Account, CheckResult, Finding, Report, Severity, Status, Verdict
from tests.helpers import CANARY, custom_payload, google_payload


def test_account_mirrors_the_platform_example() -> None:
    account = Account.model_validate(google_payload())
    assert account.domain == "company.com"
    assert account.api_payload() == google_payload()


def test_passwords_are_hidden_everywhere_but_the_api_payload() -> None:
    account = Account.model_validate(custom_payload())
    assert CANARY not in repr(account)
    assert CANARY not in str(account)
    assert CANARY not in account.model_dump_json()
    assert CANARY not in account.view().model_dump_json()
    assert account.api_payload()["smtp_password"] == CANARY


def test_validation_errors_never_show_the_password() -> None:
    with pytest.raises(ValidationError) as info:
        Account.model_validate(custom_payload(smtp_port=0, smtp_password=CANARY * 40))
    assert CANARY not in str(info.value)
    assert CANARY not in repr(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email_address", "a@b"),
        ("email_address", "x" * 250 + "@a.com"),
        ("email_address", "no-at-sign.example.com"),
        ("email_address", "two@@example.com"),
        ("email_address", "dots..in@example.com"),
        ("email_address", "user@localhost"),
        ("display_name", ""),
        ("display_name", "x" * 256),
        ("inbox_type", "GMAIL"),
        ("smtp_host", ""),
        ("smtp_host", "smtp://smtp.gmail.com"),
        ("smtp_host", "smtp.gmail.com:587"),
        ("smtp_host", "127.0.0.1:587"),
        ("smtp_host", "[::1]:587"),
        ("smtp_host", "bad host"),
        ("smtp_host", "[1.2.3.4"),
        ("imap_host", "1.2.3.4]"),
        ("imap_host", "[::1"),
        ("email_address", "sam@\u2603.example"),  # IDNA 2003 takes a snowman; IDNA 2008 (DNS) does not
        ("smtp_port", 0),
        ("smtp_port", 65536),
        ("smtp_port", "587"),
        ("smtp_port", 587.0),
        ("imap_port", True),
        ("smtp_password", ""),
        ("smtp_password", "x" * 501),
        ("daily_limit", 0),
        ("smtp_use_tls", "yes"),
    ],
)
def test_account_rejects_what_the_platform_rejects(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        Account.model_validate(custom_payload(**{field: value}))
    assert [error["loc"][0] for error in info.value.errors()] == [field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email_address", "a@b.c"),
        ("display_name", "x" * 255),
        ("smtp_port", 1),
        ("imap_port", 65535),
        ("smtp_password", "x" * 500),
        ("daily_limit", 1),
        ("smtp_host", "127.0.0.1"),
        ("email_address", "jürgen@bücher.example"),
        ("email_address", "sam@faß.example"),
        ("smtp_host", "[::1]"),
        ("smtp_host", "::1"),
        ("imap_host", "2001:db8::25"),
    ],
)
def test_account_accepts_the_boundaries(field: str, value: object) -> None:
    Account.model_validate(custom_payload(**{field: value}))


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        Account.model_validate(custom_payload(smtp_pasword="typo"))


def test_optional_fields_default_safely() -> None:
    payload = custom_payload(daily_limit=..., smtp_use_tls=..., imap_use_ssl=...)
    account = Account.model_validate(payload)
    assert account.daily_limit is None
    assert account.smtp_use_tls and account.imap_use_ssl
    assert "daily_limit" not in account.api_payload()
    assert account.api_payload(daily_limit=30)["daily_limit"] == 30


def _finding(severity: Severity) -> Finding:
    return Finding(code="x.y", severity=severity, message="m")


@pytest.mark.parametrize(
    ("severities", "status"),
    [
        ([], Status.PASS),
        ([Severity.INFO], Status.PASS),
        ([Severity.INFO, Severity.WARN], Status.WARN),
        ([Severity.WARN, Severity.ERROR], Status.ERROR),
        ([Severity.ERROR, Severity.FAIL, Severity.WARN], Status.FAIL),
    ],
)
def test_status_is_the_worst_finding(severities: list[Severity], status: Status) -> None:
    assert CheckResult.status_of([_finding(s) for s in severities]) is status


def _result(status: Status) -> CheckResult:
    return CheckResult(name="a.b", title="t", status=status, summary="s", duration_ms=0)


@pytest.mark.parametrize(
    ("statuses", "verdict", "exit_code"),
    [
        ([Status.PASS, Status.SKIPPED], Verdict.PASS, 0),
        ([Status.PASS, Status.WARN], Verdict.WARN, 0),
        ([Status.WARN, Status.ERROR], Verdict.ERROR, 3),
        ([Status.ERROR, Status.FAIL], Verdict.FAIL, 1),
    ],
)
def test_verdict_and_exit_code(statuses: list[Status], verdict: Verdict, exit_code: int) -> None:
    results = [_result(s) for s in statuses]
    assert Report.verdict_of(results) is verdict
    assert {Verdict.FAIL: 1, Verdict.ERROR: 3}.get(verdict, 0) == exit_code


def test_finding_codes_are_stable_identifiers() -> None:
    with pytest.raises(ValidationError):
        Finding(code="Not A Code", severity=Severity.WARN, message="m")
    assert json.loads(_finding(Severity.WARN).model_dump_json())["code"] == "x.y"
