"""``copybot api``: the HTTP API and the server-rendered dashboard over the projection tables (SPEC 9).

Every read comes from the SQL tables written by ``copybot project`` (:mod:`projections.queries`), config
included: the projector folds config-changes into ``projection_state``, so every GET and every page answers
while Kafka is down. Config writes are validated with :mod:`models.config` exactly as the worker validates
them and published as a ``configChange`` with :class:`streams.kafka.client.CopybotClient` (through
:func:`streams.configedit.set_config`); with Kafka down a write answers 503 and publishes nothing. This
process never imports Faust.

JSON endpoints (the OpenAPI document at ``/openapi.json``, docs at ``/docs``; request and response models in
:mod:`projections.contract`)::

    GET  /api/budgeted-dynamic/summary        per leader: B_u, E_u, r_u, our exposure, headroom, utilization
    GET  /api/users/{id}                      one leader: summary row (with PnL, reserved budget, open
                                              orders), recent attempts, skip reasons, clamp counts,
                                              exposure-vs-budget and PnL history, mode changes,
                                              positions, orders, settlements
    GET  /api/copy-attempts                   filters leader, decision, reason, from/to (decidedAtMs);
                                              newest first; limit + offset or cursor; total count
    GET  /api/orders                          orders (fillModel "reports"): filters leader, status; fill
                                              ratio, average fill price against the reference price
    GET  /api/positions                       held assets of each leader's latest leaderBook (filter leader)
    GET  /api/settlements                     positionSettled events, newest first (filter leader)
    GET  /api/users/{id}/books                the leader's leaderBook history, newest first
    GET  /api/config/global                   stored GLOBAL documents and the effective GLOBAL config
    POST /api/config/global                   body = sections of edits, e.g. {"sizing": {"budgetRMaxBps": 50}}
    GET  /api/config/user/{id}                the leader's stored USER documents and effective config
    POST /api/config/user/{id}                body = sections of edits (a null value removes the key: inherit)
    GET  /healthz, GET /metrics               liveness (database reachable), Prometheus text

A POST body carries edits: each ``section.key`` given is set (``null`` removes it so it inherits); the
other stored keys of the scope are kept. The change is built from the current stored documents (the
config-changes topic folded from the beginning, as ``copybot config set-*`` does), validated, and either
rejected with ``422 {"errors": ["sizing.x: ..."]}`` (nothing published) or published:
``200 {"changeId": ..., "warnings": [...], "publishedAt": ...}``. Every error has that one shape
(:class:`projections.contract.Errors`). Writes need ``Authorization: Bearer <token>`` when
``COPYBOT_API_TOKEN`` is set; binding a non-loopback address without a token is refused.

Pages: ``/`` (leaders), ``/config`` (global and per-leader sizing forms, the budget summary table),
``/users/{id}`` (tiles, exposure chart, recent attempts, skip reasons); see :mod:`projections.web`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol, TypeVar

import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic.alias_generators import to_camel
from sqlalchemy import Connection, Engine
from starlette.exceptions import HTTPException
from starlette.routing import Match

from models.config import RULES, ConfigStore, EffectiveConfig, Scope
from models.events import SECTION_NAMES, LeaderBook, PositionSettled
from models.units import INT64_MAX, MAX_TIME_MS
from projections import contract, queries, web
from projections.queries import HISTORY_POINTS, RECENT_ATTEMPTS, AttemptQuery
from projections.store import DEFAULT_DB, ProjectionStore
from streams.configedit import Assignment, AssignmentError, SetResult, set_config
from streams.kafka.client import CopybotClient, KafkaUnavailable
from streams.settings import Settings

__all__ = ["HISTORY_POINTS", "RECENT_ATTEMPTS", "create_app"]

TOKEN_ENV = "COPYBOT_API_TOKEN"
MAX_LIMIT = 1_000
MAX_OFFSET = 1_000_000_000
LEADER_PATH = r"^[^\x00]*[^\s\x00][^\x00]*$"
"""A leader id to write config for: not blank, no NUL (the id is a Kafka key and a SQL text value)."""
NO_NUL = r"^[^\x00]*$"
T = TypeVar("T")
BEARER = HTTPBearer(auto_error=False, description=f"the {TOKEN_ENV} of the server")
"""Module level: FastAPI resolves the (string) annotations of a route in the module's namespace."""


# --- config: publish ----------------------------------------------------------------------------------


class ConfigGateway(Protocol):
    """Where config changes are published (Kafka in production; an in-memory fake in tests)."""

    async def submit(self, scope: Scope, leader: str | None, assignments: Sequence[Assignment]) -> SetResult:
        """Build a change from the current documents with `assignments`, validate it, publish if accepted."""


class KafkaConfigGateway:
    """Folds config-changes and publishes changes with :class:`CopybotClient` (as ``copybot config``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def submit(self, scope: Scope, leader: str | None, assignments: Sequence[Assignment]) -> SetResult:
        async with CopybotClient(self.settings, client_id="copybot-api") as client:
            return await set_config(client, scope, leader, assignments)


class BodyError(ValueError):
    """A POST body that is not a sections object; ``errors`` name each problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def assignments_from_body(body: Any) -> list[Assignment]:
    """Edits from a JSON body ``{"section": {"key": value | null}}`` (null: remove the key, so it inherits).

    Unknown keys and sections not allowed in the scope are left for :func:`models.config.apply_change` to
    name, so the errors read exactly like the worker's.
    """
    if not isinstance(body, dict):
        raise BodyError(['body: expected a JSON object of sections, e.g. {"sizing": {"budgetRMaxBps": 50}}'])
    errors: list[str] = []
    edits: list[Assignment] = []
    for section, keys in body.items():
        if section not in SECTION_NAMES:
            errors.append(f"{section}: unknown section (sections: {', '.join(SECTION_NAMES)})")
        elif not isinstance(keys, dict):
            errors.append(f"{section}: expected an object of keys, got {json.dumps(keys)[:60]}")
        elif not keys:
            errors.append(f"{section}: nothing to change (give at least one key, or leave the section out)")
        else:
            for key, value in keys.items():
                if key not in RULES[section]:  # removing a key no rule knows would be accepted silently
                    errors.append(f"{section}.{key}: unknown key")
                edits.append(Assignment(section, str(key), value, unset=value is None))
    if not errors and not edits:
        errors.append("body: nothing to change (give at least one section.key)")
    if errors:
        raise BodyError(errors)
    return edits


def json_number(text: str) -> int | float:
    """A JSON number with a fraction or exponent; an integer when its value is one (60000000.0, 6e7).

    JSON Schema's ``integer`` (the OpenAPI document's) is any number with a zero fraction, so the API
    reads such numbers as integers. The Kafka wire stays strict: there, 6e7 is not an integer.
    """
    value = float(text)
    if not value.is_integer() or abs(value) > INT64_MAX:
        return value
    exact = Decimal(text)
    return int(exact) if exact == exact.to_integral_value() else value


# --- config: views ------------------------------------------------------------------------------------


def effective_json(cfg: EffectiveConfig) -> dict[str, Any]:
    """An effective config as camelCase ``section.key`` JSON (plus the derived flags)."""
    return {to_camel(k): v for k, v in asdict(cfg).items()}


def config_view(store: ConfigStore, leader: str | None) -> dict[str, Any]:
    """``GET /api/config/...``: the scope's stored documents (what an operator set), its effective config."""
    if leader is None:
        return {
            "scope": "GLOBAL",
            "configVersion": store.version,
            "sections": store.global_docs,
            "effective": effective_json(store.global_effective),
        }
    return {
        "scope": "USER",
        "followedUserId": leader,
        "configVersion": store.version,
        "sections": store.user_docs.get(leader, {}),
        "inherited": effective_json(store.global_effective),
        "effective": effective_json(store.for_leader(leader)),
    }


# --- errors: one shape, one place ---------------------------------------------------------------------


def errors_response(status: int, errors: list[str], headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's one error body, ``{"errors": [...]}`` (:class:`projections.contract.Errors`)."""
    return JSONResponse({"errors": errors}, status_code=status, headers=headers)


PATTERN_HINTS = {
    "cursor": "expected the nextCursor of a previous page, {decidedAtMs}:{attemptId}",
    "leader_id": "expected a leader id that is not blank and has no NUL character",
}
"""What a parameter's pattern means, said instead of the regular expression."""


def _validation_message(error: Any) -> str:
    where = [str(part) for part in error["loc"][1:]] or [str(error["loc"][0])]
    hint = PATTERN_HINTS.get(where[-1]) if error["type"] == "string_pattern_mismatch" else None
    return f"{'.'.join(where)}: {hint or error['msg']}"


def allowed_methods(app: FastAPI, request: Request) -> str:
    """Every method some route of `request`'s path answers (HEAD with GET), for ``Allow``."""
    methods: set[str] = set()
    for route in app.router.routes:
        if route.matches(request.scope)[0] != Match.NONE:  # PARTIAL: the path matches, the method not
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    """Map every error (routing, validation, HTTP, unexpected) to :func:`errors_response`."""

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(app, request)
        return errors_response(exc.status_code, [str(exc.detail)], headers)

    async def on_invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return errors_response(422, [_validation_message(e) for e in exc.errors()])

    async def on_crash(_request: Request, exc: Exception) -> JSONResponse:
        return errors_response(500, [f"internal error: {type(exc).__name__}"])

    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(Exception, on_crash)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        401: "a write without the API token (only when COPYBOT_API_TOKEN is set)",
        404: "no such resource",
        405: "method not allowed (the Allow header lists those that are)",
        422: "invalid parameters or body; per-key errors",
        503: "a dependency (the database, or Kafka for writes) is unavailable",
    }
    return {s: {"model": contract.Errors, "description": reasons[s]} for s in statuses}


# --- the app ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """What the routes share: the read engine, the config publisher, the optional write token."""

    engine: Engine
    gateway: ConfigGateway
    token: str | None

    def read(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            return fn(conn)


def create_app(
    db: str = DEFAULT_DB, gateway: ConfigGateway | None = None, token: str | None = None
) -> FastAPI:
    """The API and dashboard over the projection database `db`.

    `gateway` publishes config changes (default: Kafka from the ``COPYBOT_*`` settings); with `token`,
    every write needs ``Authorization: Bearer <token>``.
    """
    store = ProjectionStore(db)
    try:
        store.create_schema()  # the API may start before the projector: empty tables, not errors
    finally:
        store.close()
    config: ConfigGateway = gateway if gateway is not None else KafkaConfigGateway(Settings.from_env())
    ctx = Context(queries.read_engine(db), config, token)
    app = FastAPI(
        title="copybot API",
        version="1",
        description="Budgeted Dynamic copy-trading: projections, config and dashboard (SPEC 9).",
    )
    app.state.engine = ctx.engine
    install_error_handlers(app)
    for add_routes in (read_routes, venue_routes, config_routes, ops_routes, page_routes):
        add_routes(app, ctx)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the config edit models that the POST bodies reference."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for model in contract.EDITS_OF_SCOPE.values():
            schema = contract.schema_of(model, "#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[schema["title"]] = schema
        app.openapi_schema = document
    return app.openapi_schema


def read_routes(router: FastAPI, ctx: Context) -> None:
    """The budget summary, one leader, and the copy attempts."""

    @router.get(
        "/api/budgeted-dynamic/summary",
        tags=["budget"],
        operation_id="getSummary",
        response_model=list[contract.SummaryItem],
        responses={200: {"links": _leader_links("$response.body#/0/id")}},
    )
    def get_summary() -> JSONResponse:
        """Per leader: B_u, E_u, r_u and our exposure (USDC; rMin, rMax, rU and utilization in %)."""
        return JSONResponse(ctx.read(queries.budget_summary))

    @_leader_route(router, "/api/users/{leader_id}", "getUser", contract.UserDetail)
    def get_user(leader_id: str) -> JSONResponse:
        """A leader's summary row, recent attempts, skip-reason and clamp counts, and exposure history."""
        detail = ctx.read(lambda conn: queries.user_detail(conn, leader_id))
        if detail is None:
            raise HTTPException(404, f"no leader {leader_id!r} has been projected")
        return JSONResponse(detail)

    @router.get(
        "/api/copy-attempts",
        tags=["attempts"],
        operation_id="listCopyAttempts",
        response_model=contract.AttemptPage,
        responses={
            200: {"links": {"nextPage": {"operationId": "listCopyAttempts", "parameters": _next_page()}}},
            **_errors(422),
        },
    )
    def get_attempts(q: Annotated[AttemptQuery, Depends(attempt_query)]) -> JSONResponse:
        """Copy attempts (as emitted), newest first, with the total count of the filtered set."""
        return JSONResponse(ctx.read(lambda conn: queries.list_attempts(conn, q)))


LeaderFilter = Annotated[
    str | None, Query(min_length=1, pattern=NO_NUL, description="followedUserId: only this leader's")
]


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _get(router: FastAPI, path: str, operation_id: str, model: Any, tag: str, *errors: int) -> Decorator:
    """A read route's decorator: `model` answers 200, each of `errors` the one error shape."""
    return router.get(
        path, tags=[tag], operation_id=operation_id, response_model=model, responses=_errors(*errors)
    )


def _leader_route(
    router: FastAPI, path: str, operation_id: str, model: Any, tag: str = "budget"
) -> Decorator:
    """A GET of one leader (a path with ``{leader_id}``): 404 when unknown, 422 for a bad parameter."""
    return _get(router, path, operation_id, model, tag, 404, 422)


def venue_routes(router: FastAPI, ctx: Context) -> None:
    """The venue loop (SPEC 13): orders, positions, settlements, a leader's leaderBook history."""

    @_get(router, "/api/orders", "listOrders", list[contract.Order], "venue", 422)
    def get_orders(
        leader: LeaderFilter = None,
        status: Literal["OPEN", "FILLED", "REJECTED", "CANCELLED", "EXPIRED"] | None = None,
        limit: int = Query(100, ge=1, le=MAX_LIMIT),
    ) -> JSONResponse:
        """Orders (EXECUTEs decided under fillModel "reports"), newest first, with fill ratio and price."""
        return JSONResponse(ctx.read(lambda conn: queries.list_orders(conn, leader, status, limit)))

    @_get(router, "/api/positions", "listPositions", list[contract.Position], "venue", 422)
    def get_positions(leader: LeaderFilter = None) -> JSONResponse:
        """Held assets of each leader's latest leaderBook: shares, cost basis, mark, value, unrealized PnL."""
        return JSONResponse(ctx.read(lambda conn: queries.list_positions(conn, leader)))

    @_get(router, "/api/settlements", "listSettlements", list[PositionSettled], "venue", 422)
    def get_settlements(leader: LeaderFilter = None) -> JSONResponse:
        """positionSettled events (a resolved market paid our position out), newest first."""
        return JSONResponse(ctx.read(lambda conn: queries.list_settlements(conn, leader)))

    @_leader_route(router, "/api/users/{leader_id}/books", "getUserBooks", list[LeaderBook], "venue")
    def get_user_books(
        leader_id: str, limit: int = Query(HISTORY_POINTS, ge=1, le=MAX_LIMIT)
    ) -> JSONResponse:
        """The leader's leaderBook events (exposure, reserved, cost basis, PnL, positions), newest first."""
        books = ctx.read(lambda conn: queries.book_history(conn, leader_id, limit))
        if books is None:
            raise HTTPException(404, f"no leader {leader_id!r} has been projected")
        return JSONResponse(books)


def _leader_links(expression: str) -> dict[str, Any]:
    return {
        name: {"operationId": operation, "parameters": {"leader_id": expression}}
        for name, operation in (
            ("user", "getUser"),
            ("userConfig", "getUserConfig"),
            ("books", "getUserBooks"),
        )
    }


def _next_page() -> dict[str, str]:
    return {"cursor": "$response.body#/nextCursor"}


def attempt_query(
    leader: str | None = Query(None, min_length=1, pattern=NO_NUL, description="followedUserId"),
    decision: Literal["EXECUTE", "SKIP"] | None = Query(None),
    reason: str | None = Query(None, min_length=1, pattern=NO_NUL, description="the first reason code"),
    from_ms: int | None = Query(None, alias="from", ge=0, le=MAX_TIME_MS, description="decidedAtMs ≥ this"),
    to_ms: int | None = Query(None, alias="to", ge=0, le=MAX_TIME_MS, description="decidedAtMs < this"),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="ignored with a cursor"),
    cursor: str | None = Query(
        None,
        pattern=queries.CURSOR_PATTERN,
        description="nextCursor of the previous page (instead of offset): holds under concurrent inserts",
    ),
) -> AttemptQuery:
    """The filters and page of ``GET /api/copy-attempts``, validated (a bad one is a 422 naming it)."""
    return AttemptQuery(leader, decision, reason, from_ms, to_ms, limit, offset, cursor)


def config_routes(router: FastAPI, ctx: Context) -> None:
    """Config: GETs from the projection tables, POSTs validated and published."""

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        given = "" if credentials is None else credentials.credentials
        if ctx.token is not None and not hmac.compare_digest(given.encode(), ctx.token.encode()):
            raise HTTPException(
                401,
                f"authorization: send 'Authorization: Bearer <token>' ({TOKEN_ENV})",
                headers={"WWW-Authenticate": "Bearer"},
            )

    guard = [Depends(authorized)] if ctx.token is not None else []
    write_errors = _errors(*((401,) if ctx.token is not None else ()), 404, 422, 503)

    @router.get(
        "/api/config/global", operation_id="getGlobalConfig", response_model=contract.GlobalConfigView
    )
    def get_global_config() -> JSONResponse:
        """The stored GLOBAL documents and the effective GLOBAL config (as the projector last folded them)."""
        return JSONResponse(config_view(ctx.read(queries.config_store), None))

    @_leader_route(router, "/api/config/user/{leader_id}", "getUserConfig", contract.UserConfigView, "config")
    def get_user_config(leader_id: str) -> JSONResponse:
        """The leader's stored USER documents (absent keys inherit) and its effective config."""
        return JSONResponse(config_view(ctx.read(queries.config_store), leader_id))

    @router.post(
        "/api/config/global",
        tags=["config"],
        operation_id="setGlobalConfig",
        dependencies=guard,
        response_model=contract.ChangePublished,
        responses={**write_errors, 200: {"links": {"read": {"operationId": "getGlobalConfig"}}}},
        openapi_extra=_body("GLOBAL"),
    )
    async def post_global_config(request: Request) -> JSONResponse:
        """Change GLOBAL keys: body = sections of edits (null removes a key); 422 with per-key errors."""
        return await write(ctx.gateway, request, "GLOBAL", None)

    @router.post(
        "/api/config/user/{leader_id}",
        tags=["config"],
        operation_id="setUserConfig",
        dependencies=guard,
        response_model=contract.ChangePublished,
        responses={**write_errors, 200: {"links": _same_leader_config()}},
        openapi_extra=_body("USER"),
    )
    async def post_user_config(request: Request, leader_id: str = Path(pattern=LEADER_PATH)) -> JSONResponse:
        """Change a leader's overrides: body = sections of edits (null: inherit); 422 with per-key errors."""
        return await write(ctx.gateway, request, "USER", leader_id)


def _same_leader_config() -> dict[str, Any]:
    return {"read": {"operationId": "getUserConfig", "parameters": {"leader_id": "$request.path.leader_id"}}}


def _body(scope: Scope) -> dict[str, Any]:
    name = "GlobalConfigEdits" if scope == "GLOBAL" else "UserConfigEdits"
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def write(gateway: ConfigGateway, request: Request, scope: Scope, leader: str | None) -> JSONResponse:
    """Parse a POST body of edits, build and validate the change, publish it when accepted."""
    try:
        body = json.loads(await request.body(), parse_float=json_number)
        orjson.dumps(body)  # what the change is published with: no lone surrogates, 64-bit integers
    except orjson.JSONEncodeError as exc:
        return errors_response(422, [f"body: cannot be published as JSON: {exc}"])
    except ValueError:
        return errors_response(422, ["body: not valid JSON"])
    try:
        edits = assignments_from_body(body)
    except BodyError as exc:
        return errors_response(422, exc.errors)
    try:
        result = await gateway.submit(scope, leader, edits)
    except AssignmentError as exc:
        return errors_response(422, [str(exc)])
    except KafkaUnavailable as exc:
        return errors_response(503, [f"config not changed, nothing published: {exc}"])
    if not result.outcome.accepted:
        return errors_response(422, list(result.outcome.errors))
    return JSONResponse(
        {
            "changeId": result.change_id,
            "warnings": list(result.outcome.warnings),
            "publishedAt": result.published_at,
        }
    )


def ops_routes(router: FastAPI, ctx: Context) -> None:
    """Health and Prometheus metrics."""

    @router.get(
        "/healthz",
        tags=["ops"],
        operation_id="health",
        response_model=contract.Health,
        responses=_errors(503),
    )
    def healthz() -> JSONResponse:
        """200 while the projection database answers."""
        try:
            ctx.read(queries.ping)
        except Exception as exc:  # any database failure means unhealthy
            return errors_response(503, [f"database: {exc}"])
        return JSONResponse({"status": "ok"})

    @router.get(
        "/metrics",
        tags=["ops"],
        operation_id="metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics() -> PlainTextResponse:
        """Prometheus text: attempts by decision, per-leader budget figures, projector offsets."""
        return PlainTextResponse(ctx.read(queries.metrics_text), media_type="text/plain; version=0.0.4")


def page_routes(router: FastAPI, ctx: Context) -> None:
    """The dashboard pages (server-rendered HTML; not part of the OpenAPI document)."""

    @router.get("/", include_in_schema=False)
    def overview() -> HTMLResponse:
        return HTMLResponse(web.overview_page(ctx.read(queries.budget_summary)))

    @router.get("/config", include_in_schema=False)
    def config_page(leader: str | None = None) -> HTMLResponse:
        rows = ctx.read(queries.budget_summary)
        current = ctx.read(queries.config_store)
        leaders = sorted({r["id"] for r in rows} | set(current.user_docs))
        selected = leader if leader else (leaders[0] if leaders else None)
        page = web.config_page(
            global_docs=current.global_docs,
            global_effective=effective_json(current.global_effective),
            leaders=leaders,
            leader=selected,
            user_docs=current.user_docs.get(selected, {}) if selected else {},
            summary=rows,
            token_required=ctx.token is not None,
            problem=None,
            config_version=current.version,
        )
        return HTMLResponse(page)

    @router.get("/users/{leader_id}", include_in_schema=False)
    def user_page(leader_id: str) -> HTMLResponse:
        detail = ctx.read(lambda conn: queries.user_detail(conn, leader_id))
        if detail is None:
            return HTMLResponse(web.not_found_page(leader_id), status_code=404)
        return HTMLResponse(web.user_page(detail))


if __name__ == "__main__":  # ``python -m projections.api`` (the same as ``copybot api``)
    from projections.cli import api_main

    raise SystemExit(api_main())
