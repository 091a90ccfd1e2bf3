"""The fleet over HTTP (``inboxcheck serve --fleet-db URL``): the ``fleet`` commands' JSON documents.

``GET /v1/fleet/accounts`` is ``fleet status --format json``, ``.../{address}/history`` is ``fleet
history --format json``, ``GET /v1/fleet/changes`` is ``fleet changes --format json``: each made by
the same store function the command prints. ``POST /v1/fleet/accounts`` adds or updates accounts as
``fleet add`` does (passwords from the body only, encrypted under the server's fleet key: never a
request field; an OAuth2 account's ``oauth`` object as ``fleet add`` reads it, its client secret in
the body as ``client_secret`` rather than a file on the server); ``DELETE
/v1/fleet/accounts/{address}`` removes one and its history.

SQLAlchemy is imported here only inside functions: the module is loaded for the OpenAPI document,
which must not need the ``fleet`` extra.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from inboxcheck._batch_results import FieldIssue
from inboxcheck._errors import AccountError, FieldProblem
from inboxcheck._oauth import Provider
from inboxcheck.service.http import error_response, input_error, json_response, query_error, read_body
from inboxcheck.service.models import InputErrorDocument, Problem

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["FleetDb", "check_fleet_db", "fleet_router"]

#: The default schedule of accounts added over HTTP, as ``fleet add --interval 24h``.
DEFAULT_INTERVAL: Final = 86_400


class FleetCause(BaseModel):
    code: str | None
    message: str | None


class FleetAccountStatus(BaseModel):
    """One account of ``fleet status --format json``."""

    email_address: str
    verdict: str
    since: str | None
    checked_at: str | None
    cause: FleetCause | None


class FleetStatus(BaseModel):
    """``fleet status --format json``: every account, in address order."""

    accounts: list[FleetAccountStatus]


class FleetReportEntry(BaseModel):
    report_id: int
    checked_at: str | None
    verdict: str
    state: str
    codes: list[str]


class FleetHistory(BaseModel):
    """``fleet history --format json``: the account's reports, newest first."""

    email_address: str
    reports: list[FleetReportEntry]


class FleetChange(BaseModel):
    """One change of verdict, with what changed (findings that appeared and went, evidence)."""

    model_config = ConfigDict(extra="allow")

    email_address: str
    to: str
    at: str | None


class FleetChanges(BaseModel):
    """``fleet changes --format json``: every change of verdict, oldest first."""

    changes: list[FleetChange]


class FleetRefusal(BaseModel):
    """An account of the body that was not added: its position (line, or place in the array), its
    address when it had one, the problem, and each field's problem."""

    line: int
    email_address: str | None
    problem: str
    problems: list[FieldIssue]


class FleetAdded(BaseModel):
    """What ``POST /v1/fleet/accounts`` did with each account, by address."""

    added: list[str]
    updated: list[str]
    unchanged: list[str]
    refused: list[FleetRefusal]


class FleetOAuthInput(BaseModel):
    """An account's ``oauth`` object (``fleet add``'s, the client secret in the body): it logs in with
    OAuth2 tokens got by a refresh before each check; the payload's passwords may then be left out."""

    model_config = ConfigDict(extra="forbid")

    provider: Provider
    client_id: str
    refresh_token: str
    client_secret: str | None = None
    tenant: str | None = Field(None, description="Microsoft's tenant (default common).")
    token_url: str | None = Field(
        None, description="Another token endpoint (https; http only to the server)."
    )


class FleetDb:
    """The app's one fleet engine: opened when the app starts, disposed when it stops."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine | None = None

    async def open(self) -> None:
        from inboxcheck.fleet._db import connect

        self.engine = await connect(self.url)

    async def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            await engine.dispose()


async def check_fleet_db(url: str) -> None:
    """Open the database once before serving (its schema created if empty) and close it: a bad URL,
    an unreachable server or an old schema is a precise message before the server starts."""
    database = FleetDb(url)
    try:
        await database.open()
    finally:
        await database.close()


_MISSING: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": Problem, "description": "No valid bearer token."},
    503: {"model": Problem, "description": "The fleet database failed, or the server is shutting down."},
}
_UNKNOWN: Final[dict[int | str, dict[str, Any]]] = {
    404: {"model": Problem, "description": "No such account in the fleet."},
    422: {"model": InputErrorDocument, "description": "A path or query value is unusable."},
}
_Address = Annotated[str, Path(description="The account's email address.", min_length=1, max_length=320)]


def _engine(request: Request) -> AsyncEngine:
    from inboxcheck.service.engine import ShuttingDown

    database: FleetDb = request.app.state.fleet
    if database.engine is None or request.app.state.engine.draining:
        raise ShuttingDown
    return database.engine


async def _answer(request: Request, work: Callable[[AsyncEngine], Awaitable[Response]]) -> Response:
    """``work(engine)``'s document, or the refusal that fits: 404 for an unknown account, 503 when
    the database fails (the driver's first line, never a password) or the server shuts down."""
    from sqlalchemy.exc import SQLAlchemyError

    from inboxcheck.fleet._db import reason
    from inboxcheck.fleet.store import UnknownAccountError
    from inboxcheck.service.engine import ShuttingDown

    try:
        return await work(_engine(request))
    except ShuttingDown:
        return error_response(503, "the server is shutting down; try another instance or later")
    except UnknownAccountError as exc:
        return error_response(404, str(exc))
    except SQLAlchemyError as exc:
        return error_response(503, f"the fleet database failed: {reason(exc)}")


def fleet_router() -> APIRouter:
    router = APIRouter(prefix="/v1/fleet", tags=["fleet"])

    @router.get(
        "/accounts",
        response_model=FleetStatus,
        responses=_MISSING,
        summary="Every account of the fleet: its verdict, since when, the top cause (fleet status)",
    )
    async def accounts(request: Request) -> Response:
        from inboxcheck.fleet import store

        async def work(engine: AsyncEngine) -> Response:
            return Response(await store.status_document(engine), media_type="application/json")

        return await _answer(request, work)

    @router.post(
        "/accounts",
        response_model=FleetAdded,
        responses={
            **_MISSING,
            408: {"model": Problem, "description": "The body did not arrive in time."},
            409: {"model": Problem, "description": "The fleet's passwords are under another key."},
            413: {"model": Problem, "description": "The body is over the limit (8 MiB)."},
            422: {"model": InputErrorDocument, "description": "The body is no JSON array or JSON lines."},
            503: {"model": Problem, "description": "No fleet key, the database failed, or shutting down."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "items": {
                                "anyOf": [
                                    {"$ref": "#/components/schemas/AccountPayload"},
                                    {
                                        "type": "object",
                                        "description": "An account payload's fields (AccountPayload) "
                                        "with an oauth object beside them; its passwords may be left out.",
                                        "required": ["email_address", "oauth"],
                                        "properties": {"oauth": FleetOAuthInput.model_json_schema()},
                                    },
                                ]
                            },
                        }
                    },
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        },
        summary="Add accounts, or update them by address (fleet add): a JSON array or JSON lines",
    )
    async def add(
        request: Request,
        interval: Annotated[
            int, Query(ge=60, le=366 * 86_400, description="Seconds between this account's checks.")
        ] = DEFAULT_INTERVAL,
    ) -> Response:
        from inboxcheck.fleet import store
        from inboxcheck.fleet._crypto import WrongKeyError
        from inboxcheck.fleet.oauth import split_lines
        from inboxcheck.service.app import _refusal
        from inboxcheck.service.batches import parse_batch
        from inboxcheck.service.http import TooLarge, TooSlow

        engine = request.app.state.engine
        settings = engine.settings
        if settings.fleet_key is None:
            return error_response(
                503,
                "this server has no fleet key, so it cannot store passwords: start it with "
                "INBOXCHECK_FLEET_KEY set or --fleet-key-file (reading the fleet works without)",
            )
        if engine.draining:
            return error_response(503, "the server is shutting down; try another instance or later")
        try:
            raw = await read_body(request, settings.max_batch_body, seconds=settings.body_seconds)
            items = parse_batch(raw, limit=settings.max_batch_accounts, oauth=True)
        except (TooLarge, TooSlow) as exc:
            return _refusal(exc, engine)
        except AccountError as exc:
            return input_error(exc)
        lines = split_lines(items, discover="POST /v1/discover", remote=True)
        refused = [
            FleetRefusal(
                line=item.line,
                email_address=item.email,
                problem=problem,
                # An account refused for its oauth object alone: that field's problem.
                problems=list(item.problems)
                if item.account is None
                else [FieldIssue(field="oauth", problem=problem.split(": ", 1)[-1])],
            )
            for item, problem in lines.refused
        ]

        async def work(database: AsyncEngine) -> Response:
            try:
                done = await store.add_accounts(
                    database,
                    lines.accounts,
                    key=settings.fleet_key,
                    interval=interval,
                    now=time.time(),
                    oauth=lines.refreshes,
                )
            except WrongKeyError as exc:
                return error_response(409, str(exc))
            result = FleetAdded(
                added=done.added, updated=done.updated, unchanged=done.unchanged, refused=refused
            )
            return json_response(result.model_dump(mode="json"))

        return await _answer(request, work)

    @router.delete(
        "/accounts/{address}",
        status_code=204,
        response_class=Response,
        responses={**_MISSING, **_UNKNOWN},
        summary="Remove an account and its history (fleet remove)",
    )
    async def remove(request: Request, address: _Address) -> Response:
        from inboxcheck.fleet import store

        async def work(engine: AsyncEngine) -> Response:
            await store.remove_account(engine, address)
            return Response(status_code=204)

        return await _answer(request, work)

    @router.get(
        "/accounts/{address}/history",
        response_model=FleetHistory,
        responses={**_MISSING, **_UNKNOWN},
        summary="An account's reports, newest first (fleet history)",
    )
    async def history(
        request: Request,
        address: _Address,
        limit: Annotated[int, Query(ge=1, le=100_000, description="At most this many reports.")] = 20,
    ) -> Response:
        from inboxcheck.fleet import store

        async def work(engine: AsyncEngine) -> Response:
            return json_response(await store.history_document(engine, address, limit=limit))

        return await _answer(request, work)

    @router.get(
        "/changes",
        response_model=FleetChanges,
        responses={**_MISSING, 422: _UNKNOWN[422]},
        summary="Every change of verdict, with what changed (fleet changes)",
    )
    async def changes(
        request: Request,
        since: Annotated[
            str | None,
            Query(description="Only changes since: ISO 8601 (2026-01-31T08:00Z) or a span back (24h)."),
        ] = None,
        address: Annotated[str | None, Query(description="Only this account's changes.")] = None,
    ) -> Response:
        import click

        from inboxcheck.cli._fleet_common import _moment
        from inboxcheck.fleet import store

        try:
            start = _moment(since, now=time.time()) if since is not None else None
        except (click.BadParameter, OverflowError, ValueError) as exc:
            message = exc.message if isinstance(exc, click.BadParameter) else "not a time this server can use"
            return query_error([FieldProblem("since", message)])

        async def work(engine: AsyncEngine) -> Response:
            return json_response(await store.changes_document(engine, since=start, address=address))

        return await _answer(request, work)

    return router
