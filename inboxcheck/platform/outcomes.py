"""What a create call can end in: the created inbox, or a typed outcome with one finding and its own
exit code."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from inboxcheck._errors import ApiError
from inboxcheck._models import Finding, ServerStr

# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


class InboxStatus(StrEnum):
    """The created inbox's state on the platform."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"


class CreatedInbox(BaseModel):
    """The platform's answer to a successful create ("Sender account added successfully").

    Fields the platform adds beyond the documented ones are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: ServerStr
    email_address: ServerStr
    display_name: ServerStr
    inbox_type: ServerStr
    daily_limit: int
    status: InboxStatus
    created_at: datetime

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        # Integer ids and UUIDs are both in use; the id is only ever shown and passed back.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class ApiOutcome(StrEnum):
    """What became of one create call. Each has its own finding code and exit code."""

    CREATED = "created"
    KEY_REJECTED = "key_rejected"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    OUTCOME_UNKNOWN = "outcome_unknown"
    SERVER_ERROR = "server_error"
    UNREACHABLE = "unreachable"
    UNEXPECTED_STATUS = "unexpected_status"
    BAD_RESPONSE = "bad_response"

    @property
    def code(self) -> str:
        """The stable finding code, e.g. ``api.key_rejected``."""
        return f"api.{self.value}"

    @property
    def exit_code(self) -> int:
        return int(ApiExit[self.name])

    @property
    def may_exist(self) -> bool:
        """Whether the inbox may exist on the platform after this outcome (check before
        retrying)."""
        return self in _MAY_EXIST


class ApiExit(IntEnum):
    """Exit codes of the create step; above the check codes (0 pass, 1 fail, 2 usage, 3 could not
    tell)."""

    CREATED = 0
    KEY_REJECTED = 4
    REJECTED = 5
    DUPLICATE = 6
    RATE_LIMITED = 7
    OUTCOME_UNKNOWN = 8
    SERVER_ERROR = 9
    UNREACHABLE = 10
    UNEXPECTED_STATUS = 11
    BAD_RESPONSE = 12


_MAY_EXIST: Final = frozenset(
    {
        ApiOutcome.CREATED,
        ApiOutcome.DUPLICATE,
        ApiOutcome.OUTCOME_UNKNOWN,
        ApiOutcome.SERVER_ERROR,
        ApiOutcome.UNEXPECTED_STATUS,
        ApiOutcome.BAD_RESPONSE,
    }
)


class CreateOutcome(BaseModel):
    """The result of :meth:`PlatformClient.create_sender_account`.

    ``inbox`` is set only for :attr:`ApiOutcome.CREATED`. ``finding`` always describes the outcome
    (``info`` for a created inbox). ``attempts`` counts the HTTP requests made; every one of them
    carried ``idempotency_key``.
    """

    model_config = ConfigDict(frozen=True)

    outcome: ApiOutcome
    finding: Finding
    inbox: CreatedInbox | None = None
    attempts: int = Field(ge=0)
    idempotency_key: str
    status_code: int | None = None
    request_id: ServerStr | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is ApiOutcome.CREATED

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code

    def raise_for_outcome(self) -> CreatedInbox:
        """The created inbox, or :class:`CreateFailed` carrying this outcome."""
        if self.inbox is not None and self.ok:
            return self.inbox
        raise CreateFailed(self)


class CreateFailed(ApiError):
    """A create call that did not create an inbox; ``outcome`` says what happened instead."""

    def __init__(self, outcome: CreateOutcome) -> None:
        self.outcome = outcome
        self.exit_code = outcome.exit_code
        text = outcome.finding.message
        if outcome.finding.fix:
            text = f"{text} {outcome.finding.fix}"
        super().__init__(text)


class BulkItem(BaseModel):
    """One account's result in a bulk create, as far as the platform said."""

    model_config = ConfigDict(frozen=True)

    index: int
    email_address: ServerStr | None = None
    created: bool
    inbox_id: ServerStr | None = None
    field: ServerStr | None = None
    message: ServerStr | None = None


class BulkOutcome(BaseModel):
    """The result of :meth:`PlatformClient.create_sender_accounts_bulk`.

    ``outcome`` is :attr:`ApiOutcome.CREATED` when the platform accepted the batch, whatever each
    item's result; ``items`` then holds one :class:`BulkItem` per account it reported on."""

    model_config = ConfigDict(frozen=True)

    outcome: ApiOutcome
    finding: Finding
    job_id: ServerStr | None = None
    items: tuple[BulkItem, ...] = ()
    attempts: int = Field(ge=0)
    idempotency_key: str
    status_code: int | None = None
    request_id: ServerStr | None = None

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code
