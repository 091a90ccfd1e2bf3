"""The service's own documents. Reports, diagnoses, discoveries and batch lines are the library's
models (the same schema as the CLI's ``--format json``); these are only what HTTP adds."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from inboxcheck._input import InputErrorDocument

__all__ = ["BatchCreated", "BatchState", "BatchStatus", "DiscoverRequest", "InputErrorDocument", "Problem"]


class Problem(BaseModel):
    """Why a request was refused before any check ran (401, 404, 409, 413, 429, 503)."""

    detail: str


class DiscoverRequest(BaseModel):
    """``POST /v1/discover``: the address, and its password to log in with (optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email_address: str = Field(max_length=255)
    password: SecretStr | None = Field(default=None, max_length=500)


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
