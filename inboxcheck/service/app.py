"""The FastAPI app: ``create_app(settings)`` makes one, with its own engine (shared DNS cache, TLS
context, slots), metrics and batches in ``app.state``; nothing is module-level state.

Routes are grouped in routers (checks, batches, operations), each added by the factory; a router
for another job (the fleet, with ``--fleet-db``) is one more ``include_router`` there, behind the
same ``authorized`` dependency.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inboxcheck._diagnose import Diagnosis
from inboxcheck._errors import AccountError, FieldProblem, OptionsError
from inboxcheck._models import Account, Report
from inboxcheck._version import __version__
from inboxcheck.discovery.model import Discovery
from inboxcheck.service.batches import BatchStore, TooManyBatches, parse_batch
from inboxcheck.service.engine import Busy, Engine, ShuttingDown
from inboxcheck.service.http import (
    ClientGone,
    TooLarge,
    TooSlow,
    decode_body,
    error_response,
    input_error,
    json_response,
    query_error,
    read_body,
    while_connected,
)
from inboxcheck.service.models import (
    BatchCreated,
    BatchStatus,
    DiagnoseRequest,
    DiscoverRequest,
    InputErrorDocument,
    Problem,
    diagnose_body,
    trust_hosts_query,
)
from inboxcheck.service.settings import ServiceSettings

__all__ = ["ACCESS_LOGGER", "create_app"]

ACCESS_LOGGER: Final = "inboxcheck.service.access"
SOURCE: Final = "request body"
#: nginx's code for "the client closed the request": logged, never sent (nobody is there).
CLIENT_CLOSED: Final = 499

_REFUSALS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": Problem, "description": "No valid bearer token."},
    408: {"model": Problem, "description": "The body did not arrive in time (30 s)."},
    413: {"model": Problem, "description": "The body is over the limit (64 KiB for one account)."},
    422: {"model": InputErrorDocument, "description": "The payload or a query value is unusable."},
    429: {"model": Problem, "description": "Every slot and the wait queue are taken; see Retry-After."},
    503: {"model": Problem, "description": "The server is shutting down."},
}


def _body(schema: str, *, jsonl: bool = False, either: str | None = None) -> dict[str, Any]:
    """The request body's document: ``schema``; or one of ``schema`` and ``either``; or (``jsonl``)
    an array of ``schema`` or JSON lines."""
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    if either is not None:
        content["application/json"] = {
            "schema": {
                "anyOf": [
                    {"$ref": f"#/components/schemas/{schema}"},
                    {"$ref": f"#/components/schemas/{either}"},
                ]
            }
        }
    if jsonl:
        content["application/json"] = {
            "schema": {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}}
        }
        content["application/x-ndjson"] = {"schema": {"type": "string"}}
    return {"requestBody": {"required": True, "content": content}}


def create_app(settings: ServiceSettings) -> FastAPI:
    """A new app serving the checks with ``settings``; its shared state lives and dies with it."""
    engine = Engine(settings)
    batches = BatchStore(engine, limit=settings.max_batches, keep_seconds=settings.batch_keep_seconds)

    fleet = None
    if settings.fleet_db is not None:
        from inboxcheck.service.fleet import FleetDb

        fleet = FleetDb(settings.fleet_db)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if fleet is not None:
            await fleet.open()
        try:
            yield
        finally:
            engine.draining = True
            await batches.close()
            if fleet is not None:
                await fleet.close()

    app = FastAPI(
        title="inboxcheck",
        version=__version__,
        summary="Checks of bring-your-own-credentials SMTP/IMAP inboxes, as an HTTP service.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.batches = batches

    async def on_bad_query(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [
            FieldProblem(".".join(str(p) for p in error.get("loc", ())[1:]) or "query", str(error.get("msg")))
            for error in exc.errors()
        ]
        return query_error(problems)

    app.add_exception_handler(RequestValidationError, on_bad_query)
    guarded = [Depends(authorized)]
    app.include_router(_checks_router(), dependencies=guarded)
    app.include_router(_batches_router(), dependencies=guarded)
    if fleet is not None:
        from inboxcheck.service.fleet import fleet_router

        app.state.fleet = fleet
        app.include_router(fleet_router(), dependencies=guarded)
    app.include_router(_operations_router())
    app.openapi = _openapi_with_payloads(app)  # type: ignore[method-assign]
    app.add_middleware(_AccessLog)
    return app


def authorized(request: Request) -> None:
    """``Authorization: Bearer <token>`` against every configured token, in constant time."""
    engine: Engine = request.app.state.engine
    if not engine.settings.tokens:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not engine.settings.token_matches(token.strip()):
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})


def _openapi_with_payloads(app: FastAPI) -> Any:
    """FastAPI's document, with the account payload (read by hand, see ``read_body``) in it."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = original()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        models = (
            (Account, "AccountPayload"),
            (DiscoverRequest, "DiscoverRequest"),
            (DiagnoseRequest, "DiagnoseRequest"),
        )
        for model, name in models:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
            for part, definition in schema.pop("$defs", {}).items():
                # A response's own document (a report in DiagnoseRequest) stays as FastAPI wrote it.
                schemas.setdefault(part, definition)
            schemas[name] = schema
        # Read as /v1/check reads a payload (parse_account), so its document is the payload's.
        schemas["DiagnoseRequest"]["properties"]["account"] = {"$ref": "#/components/schemas/AccountPayload"}
        app.openapi_schema = document
        return document

    return openapi


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _refusal(exc: Exception, engine: Engine) -> Response:
    if isinstance(exc, Busy):
        return error_response(
            429,
            "every check slot and the wait queue are taken; try again later",
            headers={"Retry-After": str(engine.settings.retry_after)},
        )
    if isinstance(exc, TooLarge):
        engine.metrics.refused["too_large"] += 1
        return error_response(413, str(exc))
    if isinstance(exc, TooSlow):
        engine.metrics.refused["too_slow"] += 1
        return error_response(408, str(exc), headers={"Connection": "close"})
    engine.metrics.refused["shutting_down"] += 1
    return error_response(503, "the server is shutting down; try another instance or later")


def _options_for(
    engine: Engine, send_test: bool, deliverability: bool, dkim_selector: list[str] | None
) -> Any:
    overrides: dict[str, Any] = {}
    if send_test:
        overrides["send_test"] = True
    if deliverability:
        overrides["deliverability"] = True
    if dkim_selector and len(dkim_selector) > engine.settings.max_selectors:
        raise OptionsError(f"dkim_selector: at most {engine.settings.max_selectors} selectors a request")
    if dkim_selector:
        overrides["dkim_selectors"] = (*engine.settings.options.dkim_selectors, *dkim_selector)
    return engine.settings.check_options(overrides)


async def _payload(request: Request, engine: Engine) -> object:
    if engine.draining:
        raise ShuttingDown
    settings = engine.settings
    return decode_body(await read_body(request, settings.max_body, seconds=settings.body_seconds))


_Selectors = Annotated[list[str] | None, Query(description="Also try this DKIM selector (repeatable).")]
_TrustHosts = Annotated[
    list[str] | None,
    Query(
        description="With a partial payload (a batch's: each): accept this discovered host outside the "
        "address's domain (--trust-host; repeatable, at most 16).",
    ),
]
_NoAlternates = Annotated[
    bool, Query(description="Do not try the provider's other hosts and ports (diagnose --no-alternates).")
]


def _checks_router() -> APIRouter:
    from inboxcheck._input import parse_account
    from inboxcheck.discovery.complete import is_partial

    router = APIRouter(prefix="/v1", tags=["checks"])

    async def account_and_options(
        request: Request,
        send_test: bool,
        deliverability: bool,
        dkim_selector: list[str] | None,
        trust_host: list[str] | None,
        *,
        diagnosing: bool = False,
    ) -> tuple[object, Any, Report | None, tuple[str, ...]] | Response:
        """The payload (an ``Account`` unless partial), the options, (``diagnosing``) the earlier
        report the body carries and the hosts trusted to complete a partial payload; or the refusal."""
        engine = _engine(request)
        previous = None
        try:
            trust_hosts = trust_hosts_query(trust_host)
        except AccountError as exc:
            return query_error(exc.problems)
        try:
            data = await _payload(request, engine)
            if diagnosing:
                data, previous = diagnose_body(data, source=SOURCE)
            options = _options_for(engine, send_test, deliverability, dkim_selector)
        except (TooLarge, TooSlow, ShuttingDown) as exc:
            return _refusal(exc, engine)
        except AccountError as exc:
            return input_error(exc)
        except OptionsError as exc:
            return query_error([FieldProblem("query", str(exc))])
        if not is_partial(data):
            try:
                data = parse_account(data, source=SOURCE, env={})
            except AccountError as exc:
                return input_error(exc)
        return data, options, previous, trust_hosts

    async def prepared(
        engine: Engine, data: object, options: Any, trust_hosts: tuple[str, ...]
    ) -> tuple[Account, tuple[Any, ...]]:
        """The account, completed by discovery first when the payload was partial."""
        if isinstance(data, Account):
            return data, ()
        assert isinstance(data, dict)
        payload, leading = await engine.complete(data, options, source=SOURCE, trust_hosts=trust_hosts)
        return parse_account(payload, source=SOURCE, env={}), leading

    async def guarded(request: Request, engine: Engine, work: Any) -> Response:
        try:
            return await while_connected(request, work)
        except (Busy, ShuttingDown) as exc:
            return _refusal(exc, engine)
        except AccountError as exc:
            return input_error(exc)
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)

    @router.post(
        "/check",
        response_model=Report,
        responses=_REFUSALS,
        openapi_extra=_body("AccountPayload"),
        summary="Check one account (the report of check --format json, whatever its verdict)",
    )
    async def check(
        request: Request,
        send_test: bool = False,
        deliverability: bool = False,
        dkim_selector: _Selectors = None,
        trust_host: _TrustHosts = None,
    ) -> Response:
        engine = _engine(request)
        parsed = await account_and_options(request, send_test, deliverability, dkim_selector, trust_host)
        if isinstance(parsed, Response):
            return parsed
        data, options, _, trust_hosts = parsed

        async def run() -> Response:
            async with engine.slot():
                account, leading = await prepared(engine, data, options, trust_hosts)
                report = await engine.check(account, options, leading=leading)
            return Response(report.model_dump_json(), media_type="application/json")

        return await guarded(request, engine, run())

    @router.post(
        "/diagnose",
        response_model=Diagnosis,
        responses=_REFUSALS,
        openapi_extra=_body("AccountPayload", either="DiagnoseRequest"),
        summary="Diagnose one account: ranked causes and the alternates that work",
        description="The body is the account payload, or a DiagnoseRequest: the payload with an "
        "earlier report of the account (diagnose --previous), to show what changed since.",
    )
    async def diagnose(
        request: Request,
        deliverability: bool = False,
        dkim_selector: _Selectors = None,
        no_alternates: _NoAlternates = False,
        trust_host: _TrustHosts = None,
    ) -> Response:
        from inboxcheck._diagnose import diagnose as run_diagnose

        engine = _engine(request)
        parsed = await account_and_options(
            request, False, deliverability, dkim_selector, trust_host, diagnosing=True
        )
        if isinstance(parsed, Response):
            return parsed
        data, options, previous, trust_hosts = parsed

        async def run() -> Response:
            async with engine.slot():
                account, leading = await prepared(engine, data, options, trust_hosts)
                result = await run_diagnose(
                    account,
                    options=options,
                    previous=previous,
                    try_alternates=not no_alternates,
                    presets=engine.presets,
                    ssl_context=engine.tls,
                    leading=leading,
                    dns_client=engine.dns(),
                )
            engine.metrics.observe(result.report, result.report.duration_ms / 1000)
            return Response(result.model_dump_json(), media_type="application/json")

        return await guarded(request, engine, run())

    @router.post(
        "/discover",
        response_model=Discovery,
        responses=_REFUSALS,
        openapi_extra=_body("DiscoverRequest"),
        summary="Find an address's SMTP and IMAP settings and try them",
    )
    async def discover(request: Request) -> Response:
        from pydantic import ValidationError

        from inboxcheck.discovery.run import discover as run_discover

        engine = _engine(request)
        try:
            data = await _payload(request, engine)
            wanted = DiscoverRequest.model_validate(data)
        except (TooLarge, TooSlow, ShuttingDown) as exc:
            return _refusal(exc, engine)
        except AccountError as exc:
            return input_error(exc)
        except ValidationError as exc:
            problems = [
                FieldProblem(
                    str(error["loc"][0]) if error.get("loc") else "(payload)",
                    str(error["msg"]).removeprefix("Value error, "),
                )
                for error in exc.errors(include_input=False)
            ]
            return input_error(AccountError(SOURCE, problems))
        options = engine.settings.options

        async def run() -> Response:
            async with engine.slot():
                result = await run_discover(
                    wanted.email_address,
                    smtp_password=wanted.password,
                    options=options,
                    trust_hosts=wanted.trust_hosts,
                    presets=engine.presets,
                    ssl_context=engine.tls,
                    dns_client=engine.dns(),
                )
            return Response(result.model_dump_json(), media_type="application/json")

        return await guarded(request, engine, run())

    return router


def _batches_router() -> APIRouter:
    router = APIRouter(prefix="/v1/batches", tags=["batches"])

    @router.post(
        "",
        status_code=202,
        response_model=BatchCreated,
        responses=_REFUSALS,
        openapi_extra=_body("AccountPayload", jsonl=True),
        summary="Start a batch (a JSON array or JSON lines of accounts); poll it, stream its results",
    )
    async def create(
        request: Request,
        deliverability: bool = False,
        dkim_selector: _Selectors = None,
        trust_host: _TrustHosts = None,
    ) -> Response:
        engine = _engine(request)
        store: BatchStore = request.app.state.batches
        try:
            trust_hosts = trust_hosts_query(trust_host)
        except AccountError as exc:
            return query_error(exc.problems)
        try:
            if engine.draining:
                raise ShuttingDown
            raw = await read_body(
                request, engine.settings.max_batch_body, seconds=engine.settings.body_seconds
            )
            items = parse_batch(raw, limit=engine.settings.max_batch_accounts)
            options = _options_for(engine, False, deliverability, dkim_selector)
            batch = store.start(items, options, trust_hosts=trust_hosts)
        except (TooLarge, TooSlow, ShuttingDown) as exc:
            return _refusal(exc, engine)
        except AccountError as exc:
            return input_error(exc)
        except OptionsError as exc:
            return query_error([FieldProblem("query", str(exc))])
        except TooManyBatches:
            return error_response(
                429, "too many batches are running; wait for one to finish", {"Retry-After": "30"}
            )
        created = BatchCreated(
            id=batch.id,
            status_url=f"/v1/batches/{batch.id}",
            results_url=f"/v1/batches/{batch.id}/results",
            total=batch.total,
        )
        return json_response(created.model_dump(mode="json"), 202)

    def found(request: Request, batch_id: str) -> Any:
        batch = request.app.state.batches.get(batch_id)
        if batch is None:
            raise HTTPException(404, "no such batch (finished batches are kept only for a while)")
        return batch

    missing: dict[int | str, dict[str, Any]] = {
        404: {"model": Problem, "description": "No such batch."},
        401: _REFUSALS[401],
    }

    @router.get("/{batch_id}", response_model=BatchStatus, responses=missing, summary="A batch's state")
    async def status(request: Request, batch_id: str) -> Response:
        return json_response(found(request, batch_id).status().model_dump(mode="json"))

    @router.get(
        "/{batch_id}/results",
        responses={**missing, 200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}},
        response_class=StreamingResponse,
        summary="The batch's result lines (as check --batch writes them), streamed as they finish",
    )
    async def results(request: Request, batch_id: str) -> StreamingResponse:
        batch = found(request, batch_id)
        return StreamingResponse(batch.results(), media_type="application/x-ndjson")

    @router.delete("/{batch_id}", response_model=BatchStatus, responses=missing, summary="Cancel a batch")
    async def cancel(request: Request, batch_id: str) -> Response:
        batch = found(request, batch_id)
        await request.app.state.batches.cancel(batch)
        return json_response(batch.status().model_dump(mode="json"))

    return router


def _operations_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Whether the server takes checks (503 while shutting down)")
    async def healthz(request: Request) -> Response:
        engine = _engine(request)
        if engine.draining:
            return json_response({"status": "shutting down"}, 503)
        return json_response({"status": "ok", "version": __version__})

    @router.get(
        "/metrics",
        dependencies=[Depends(authorized)],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, 401: _REFUSALS[401]},
        summary="Counters in the Prometheus text format",
    )
    async def metrics(request: Request) -> Response:
        return Response(_engine(request).metrics.render(), media_type="text/plain; version=0.0.4")

    return router


class _AccessLog:
    """One line a request: method, path (no query) and status; never a header, a body or a query.

    Also the last line of defence: an exception is logged by its type only (its text could hold
    what a request sent) and answered 500, so that no server logs a traceback with it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from inboxcheck.cli._terminal import escape

        status: int | None = None

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        method, path = escape(str(scope.get("method", ""))), escape(str(scope.get("path", "")))
        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # noqa: BLE001 - logged without its text, answered 500
            self.log.error("%s %s: internal error (%s)", method, path, type(exc).__name__)
            if status is None:
                status = 500
                with contextlib.suppress(Exception):
                    await error_response(500, "internal error; this is a bug in inboxcheck")(
                        scope, receive, send
                    )
        finally:
            self.log.info("%s %s %s", method, path, status if status is not None else CLIENT_CLOSED)
