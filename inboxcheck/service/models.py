"""The service's own documents. Reports, diagnoses, discoveries and batch lines are the library's
models (the same schema as the CLI's ``--format json``); these are only what HTTP adds."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

from inboxcheck._errors import AccountError, FieldProblem
from inboxcheck._input import InputErrorDocument
from inboxcheck._models import Report

__all__ = [
    "BatchCreated",
    "BatchState",
    "BatchStatus",
    "DiagnoseRequest",
    "DiscoverRequest",
    "InputErrorDocument",
    "Problem",
    "TrustHosts",
    "diagnose_body",
    "trust_hosts_query",
]

#: Hosts a request may trust, each a DNS name (at most 253 characters).
MAX_TRUST_HOSTS: Final = 16

#: The hosts discovered outside the address's domain that a password may go to (--trust-host): the
#: one rule for discover's ``trust_hosts`` field and the ``trust_host`` query of check and diagnose.
TrustHosts = Annotated[
    tuple[Annotated[str, Field(min_length=1, max_length=253)], ...], Field(max_length=MAX_TRUST_HOSTS)
]


class Problem(BaseModel):
    """Why a request was refused before any check ran (401, 404, 409, 413, 429, 503)."""

    detail: str


class DiscoverRequest(BaseModel):
    """``POST /v1/discover``: the address, and its password to log in with (optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email_address: str = Field(max_length=255)
    password: SecretStr | None = Field(default=None, max_length=500)
    trust_hosts: TrustHosts = Field(
        default=(),
        description="Allow the password to go to these discovered hosts outside the address's domain "
        "(discover --trust-host).",
    )


class DiagnoseRequest(BaseModel):
    """``POST /v1/diagnose`` with an earlier report: the account payload (as ``/v1/check`` reads it)
    and an earlier JSON report of the account (``diagnose --previous``), to show what changed since
    (DKIM key, MX). A body without ``account`` is the account payload alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: dict[str, Any]
    previous: Report | None = Field(
        default=None,
        description="An earlier report of this account (check --format json), to show what changed since.",
    )


def diagnose_body(data: object, *, source: str) -> tuple[object, Report | None]:
    """The account payload and the earlier report in a diagnose body (``AccountError`` if unusable).

    An account payload has no ``account`` field, so a body with one is a :class:`DiagnoseRequest`.
    """
    if not isinstance(data, dict) or "account" not in data:
        return data, None
    try:
        wanted = DiagnoseRequest.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc.errors(include_input=False))
        raise AccountError(source, problems, message="the diagnose request is not valid") from None
    return wanted.account, wanted.previous


def trust_hosts_query(values: list[str] | None) -> tuple[str, ...]:
    """The ``trust_host`` values of a check or diagnose query, held to discover's rule for
    ``trust_hosts``; ``AccountError`` (its problems named ``trust_host``) if they break it."""
    try:
        return _TRUST_HOSTS.validate_python(tuple(values or ()))
    except ValidationError as exc:
        problems = [
            FieldProblem("trust_host", str(error.get("msg", "is not valid")))
            for error in exc.errors(include_input=False)
        ]
        raise AccountError("query", problems) from None


_TRUST_HOSTS: Final = TypeAdapter(TrustHosts)


def _problems(errors: list[Any]) -> list[FieldProblem]:
    """The body's problems, the earlier report's as one (``diagnose --previous`` names it so);
    never an input."""
    problems: list[FieldProblem] = []
    in_report: list[str] = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        message = str(error.get("msg", "is not valid"))
        if loc[:1] == ["previous"]:
            in_report.append(f"{'.'.join(loc[1:]) or 'the report'}: {message}")
        else:
            problems.append(FieldProblem(loc[0] if loc else "(payload)", message))
    if in_report:
        more = f"; and {len(in_report) - 1} more" if len(in_report) > 1 else ""
        problems.append(FieldProblem("previous", f"not an inboxcheck JSON report ({in_report[0]}{more})"))
    return problems


class BatchState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


class BatchCreated(BaseModel):
    id: str
    status_url: str
    results_url: str
    total: int


class BatchStatus(BaseModel):
    """Where a batch is: its state, accounts done of the total by verdict, and an estimate."""

    id: str
    state: BatchState
    total: int
    done: int
    counts: dict[str, int] = Field(description="Accounts done, by verdict ('invalid' for an unusable one).")
    created_at: datetime
    finished_at: datetime | None
    eta_seconds: float | None = Field(description="Seconds left at the pace so far; null before the first.")
