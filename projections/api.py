"""``copybot api``: the HTTP API and the server-rendered dashboard over the projection tables (SPEC 9).

Reads come from the SQL tables written by ``copybot project`` (their columns are the query contract, see
:mod:`projections.rows`); config writes are validated with :mod:`models.config` exactly as the worker
validates them and published as a ``configChange`` with :class:`streams.kafka.client.CopybotClient` (through
:func:`streams.configedit.set_config`). This process never imports Faust.

JSON endpoints (OpenAPI docs at ``/docs``)::

    GET  /api/budgeted-dynamic/summary        per leader: B_u, E_u, r_u, our exposure, headroom, utilization
    GET  /api/users/{id}                      one leader: summary row, recent attempts, skip reasons,
                                              clamp counts, exposure-vs-budget history
    GET  /api/copy-attempts                   filters leader, decision, reason, from/to (decidedAtMs);
                                              newest first; limit + offset or cursor; total count
    GET  /api/config/global                   stored GLOBAL documents and the effective GLOBAL config
    POST /api/config/global                   body = sections, e.g. {"sizing": {"budgetUsdcMicros": 6e7}}
    GET  /api/config/user/{id}                the leader's stored USER documents and effective config
    POST /api/config/user/{id}                body = sections (a null value removes the key: inherit)
    GET  /healthz, GET /metrics               liveness (database reachable), Prometheus text

A POST body carries edits: each ``section.key`` given is set (``null`` removes it so it inherits); the
other stored keys of the scope are kept. The change is built from the current stored documents (the
config-changes topic folded from the beginning, as ``copybot config set-*`` does), validated, and either
rejected with ``422 {"errors": ["sizing.x: ..."]}`` (nothing published) or published:
``200 {"changeId": ..., "warnings": [...]}``. Writes need ``Authorization: Bearer <token>`` when
``COPYBOT_API_TOKEN`` is set; binding a non-loopback address without a token is refused.

Pages: ``/`` (leaders), ``/config`` (global and per-leader sizing forms, the budget summary table),
``/users/{id}`` (tiles, exposure chart, recent attempts, skip reasons); see :mod:`projections.web`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from sqlalchemy import Connection, Engine, and_, create_engine, event, func, or_, select, text
from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool

from models.config import ConfigStore, EffectiveConfig, Scope
from models.events import SECTION_NAMES
from models.units import MICROS
from projections import web
from projections.store import (
    DEFAULT_DB,
    ProjectionStore,
    copy_attempts,
    database_url,
    leader_budget,
    leader_clamp_counts,
    leader_reason_counts,
    projection_offsets,
)
from streams.configedit import Assignment, AssignmentError, SetResult, read_store, set_config
from streams.kafka.client import CopybotClient, KafkaUnavailable
from streams.settings import Settings, SettingsError

TOKEN_ENV = "COPYBOT_API_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_LIMIT = 1_000
RECENT_ATTEMPTS = 25
HISTORY_POINTS = 400
"""Exposure-history points at most (evenly thinned, the newest always kept)."""


# --- config: read and publish ----------------------------------------------------------------------


class ConfigGateway(Protocol):
    """Where config is read from and published to (Kafka in production; an in-memory fake in tests)."""

    async def load(self) -> ConfigStore:
        """The current config store (every stored document)."""

    async def submit(self, scope: Scope, leader: str | None, assignments: Sequence[Assignment]) -> SetResult:
        """Build a change from the current documents with `assignments`, validate it, publish if accepted."""


class KafkaConfigGateway:
    """Folds config-changes and publishes changes with :class:`CopybotClient` (as ``copybot config``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def load(self) -> ConfigStore:
        async with CopybotClient(self.settings, client_id="copybot-api") as client:
            return (await read_store(client)).store

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
        else:
            for key, value in keys.items():
                edits.append(Assignment(section, str(key), value, unset=value is None))
    if not errors and not edits:
        errors.append("body: nothing to change (give at least one section.key)")
    if errors:
        raise BodyError(errors)
    return edits


def effective_json(cfg: EffectiveConfig) -> dict[str, Any]:
    """An effective config as camelCase ``section.key`` JSON (plus the derived flags)."""
    return {_camel(k): v for k, v in asdict(cfg).items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


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


# --- reads: the projection tables -------------------------------------------------------------------


def _usdc(micros: int | None) -> float | None:
    return None if micros is None else micros / MICROS


def read_engine(db: str) -> Engine:
    """An engine for reads: no write lock is ever taken (unlike the projector's store)."""
    url = database_url(db)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url)

        def pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        event.listen(engine, "connect", pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def summary_item(r: Any) -> dict[str, Any]:
    """One leader of ``/api/budgeted-dynamic/summary`` from its ``leader_budget`` row (USD; rates in %)."""
    return {
        "id": r.leader_id,
        "label": r.label,
        "sizingMode": r.sizing_mode,
        "budgetedDynamicActive": bool(r.budgeted_dynamic_active),
        "budgetUsdc": _usdc(r.budget_usdc_micros),
        "budgetEnforcement": r.budget_enforcement,
        "rMin": r.r_min_bps / 100,
        "rMax": r.r_max_bps / 100,
        "leaderExposureUsdc": _usdc(r.leader_exposure_micros),
        "leaderExposureStatus": r.leader_exposure_status,
        "execExposureUsdc": _usdc(r.exec_exposure_micros),
        "execSliceExposureUsdc": _usdc(r.exec_slice_exposure_micros),
        "rU": None if r.r_u is None else r.r_u * 100,
        "budgetHeadroomUsdc": _usdc(r.headroom_micros),
        "utilizationPct": None if r.utilization is None else r.utilization * 100,
        "attempts": r.attempts,
        "executed": r.executed,
        "skipped": r.skipped,
        "trades": r.trades,
        "lastDecidedAtMs": r.last_decided_at_ms,
    }


def summary(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(leader_budget).order_by(leader_budget.c.leader_id)).all()
    return [summary_item(r) for r in rows]


def _counts(conn: Connection, table: Any, column: str, leader: str) -> dict[str, int]:
    rows = conn.execute(
        select(table.c[column], table.c["count"])
        .where(table.c.leader_id == leader, table.c["count"] > 0)
        .order_by(table.c["count"].desc(), table.c[column])
    ).all()
    return {r[0]: int(r[1]) for r in rows}


def exposure_history(conn: Connection, leader: str, points: int = HISTORY_POINTS) -> list[dict[str, Any]]:
    """Our exposure to `leader` just after each decision, with the budget then in force (oldest first)."""
    c = copy_attempts.c
    rows = conn.execute(
        select(
            c.decided_at_ms,
            c.decision,
            c.reducing,
            c.current_exposure_micros,
            c.target_notional_micros,
            c.budget_usdc_micros,
        )
        .where(c.leader_id == leader)
        .order_by(c.decided_at_ms, c.attempt_id)
    ).all()
    history = []
    for r in rows:
        ours = r.current_exposure_micros  # the same rule as projections.rows.exposure_after
        if r.decision == "EXECUTE":
            ours = max(0, ours - r.target_notional_micros) if r.reducing else ours + r.target_notional_micros
        history.append(
            {
                "t": r.decided_at_ms,
                "execExposureUsdc": ours / MICROS,
                "budgetUsdc": _usdc(r.budget_usdc_micros),
            }
        )
    if len(history) > points:
        step = len(history) / points
        history = [history[int(i * step)] for i in range(points - 1)] + [history[-1]]
    return history


def attempt_json(raw: str) -> Any:
    return json.loads(raw)


def user_detail(conn: Connection, leader: str) -> dict[str, Any] | None:
    row = conn.execute(select(leader_budget).where(leader_budget.c.leader_id == leader)).first()
    if row is None:
        return None
    c = copy_attempts.c
    recent = conn.execute(
        select(c.attempt_json)
        .where(c.leader_id == leader)
        .order_by(c.decided_at_ms.desc(), c.attempt_id.desc())
        .limit(RECENT_ATTEMPTS)
    ).scalars()
    return {
        "summary": summary_item(row),
        "recentAttempts": [attempt_json(a) for a in recent],
        "skipReasons": _counts(conn, leader_reason_counts, "reason", leader),
        "clamps": _counts(conn, leader_clamp_counts, "clamp", leader),
        "exposureHistory": exposure_history(conn, leader),
    }


@dataclass(frozen=True, slots=True)
class AttemptQuery:
    leader: str | None = None
    decision: str | None = None
    reason: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    limit: int = 50
    offset: int = 0
    cursor: str | None = None


def encode_cursor(decided_at_ms: int, attempt_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([decided_at_ms, attempt_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        decided, attempt_id = value
        if type(decided) is not int or not isinstance(attempt_id, str):
            raise ValueError(value)
        return decided, attempt_id
    except (ValueError, TypeError, binascii.Error):
        raise ValueError(f"cursor {cursor!r} is not one returned as nextCursor") from None


def list_attempts(conn: Connection, q: AttemptQuery) -> dict[str, Any]:
    """``/api/copy-attempts``: newest first (decidedAtMs, then attemptId, descending); `from` ≤ t < `to`."""
    c = copy_attempts.c
    where = []
    if q.leader is not None:
        where.append(c.leader_id == q.leader)
    if q.decision is not None:
        where.append(c.decision == q.decision)
    if q.reason is not None:
        where.append(c.reason == q.reason)
    if q.from_ms is not None:
        where.append(c.decided_at_ms >= q.from_ms)
    if q.to_ms is not None:
        where.append(c.decided_at_ms < q.to_ms)
    total = conn.execute(
        select(func.count()).select_from(copy_attempts).where(and_(True, *where))
    ).scalar_one()
    page = list(where)
    if q.cursor is not None:
        decided, attempt_id = decode_cursor(q.cursor)
        page.append(
            or_(c.decided_at_ms < decided, and_(c.decided_at_ms == decided, c.attempt_id < attempt_id))
        )
    query = (
        select(c.attempt_json, c.decided_at_ms, c.attempt_id)
        .where(and_(True, *page))
        .order_by(c.decided_at_ms.desc(), c.attempt_id.desc())
        .limit(q.limit)
    )
    if q.cursor is None and q.offset:
        query = query.offset(q.offset)
    rows = conn.execute(query).all()
    last = rows[-1] if len(rows) == q.limit else None
    return {
        "total": int(total),
        "limit": q.limit,
        "offset": q.offset if q.cursor is None else None,
        "nextCursor": None if last is None else encode_cursor(last.decided_at_ms, last.attempt_id),
        "items": [attempt_json(r.attempt_json) for r in rows],
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(conn: Connection) -> str:
    """Prometheus text exposition: attempts by decision, per-leader budget figures, projection offsets."""
    lines = [
        "# HELP copybot_copy_attempts_total Copy attempts projected, by decision.",
        "# TYPE copybot_copy_attempts_total counter",
    ]
    by_decision: dict[str, int] = dict(
        conn.execute(select(copy_attempts.c.decision, func.count()).group_by(copy_attempts.c.decision)).all()
    )
    for decision in sorted({"EXECUTE", "SKIP", *by_decision}):
        lines.append(
            f'copybot_copy_attempts_total{{decision="{_label(decision)}"}} {by_decision.get(decision, 0)}'
        )
    leaders = conn.execute(select(leader_budget).order_by(leader_budget.c.leader_id)).all()
    gauges: list[tuple[str, str, Any]] = [
        ("copybot_leader_utilization_ratio", "Our exposure / B_u (absent when B_u = 0).", "utilization"),
        ("copybot_leader_budget_usdc", "B_u in USDC.", "budget_usdc_micros"),
        (
            "copybot_leader_exec_exposure_usdc",
            "Our exposure attributed to the leader, USDC.",
            "exec_exposure_micros",
        ),
        ("copybot_leader_exposure_usdc", "E_u, the leader's own exposure, USDC.", "leader_exposure_micros"),
        ("copybot_leader_copy_rate", "r_u of the leader's last attempt (fraction).", "r_u"),
    ]
    for name, help_text, column in gauges:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for r in leaders:
            value = getattr(r, column)
            if value is None:
                continue
            if column.endswith("_micros"):
                value = value / MICROS
            lines.append(f'{name}{{leader="{_label(r.leader_id)}"}} {value}')
    last_decided = conn.execute(select(func.max(copy_attempts.c.decided_at_ms))).scalar()
    lines += [
        "# HELP copybot_projection_last_decided_at_ms decidedAtMs of the newest projected attempt.",
        "# TYPE copybot_projection_last_decided_at_ms gauge",
        f"copybot_projection_last_decided_at_ms {last_decided or 0}",
        "# HELP copybot_projection_next_offset The next offset the projector consumes, per partition.",
        "# TYPE copybot_projection_next_offset gauge",
    ]
    for r in conn.execute(
        select(projection_offsets).order_by(projection_offsets.c.topic, projection_offsets.c.partition)
    ):
        lines.append(
            f'copybot_projection_next_offset{{topic="{_label(r.topic)}",partition="{r.partition}"}} '
            f"{r.next_offset}"
        )
    return "\n".join(lines) + "\n"


# --- the app ------------------------------------------------------------------------------------------


def _errors(status: int, errors: list[str]) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status)


def create_app(
    db: str = DEFAULT_DB, gateway: ConfigGateway | None = None, token: str | None = None
) -> FastAPI:
    """The API and dashboard over the projection database `db`.

    `gateway` reads and publishes config (default: Kafka from the ``COPYBOT_*`` settings); with `token`,
    every write needs ``Authorization: Bearer <token>``.
    """
    store = ProjectionStore(db)
    try:
        store.create_schema()  # the API may start before the projector: empty tables, not errors
    finally:
        store.close()
    engine = read_engine(db)
    config: ConfigGateway = gateway if gateway is not None else KafkaConfigGateway(Settings.from_env())
    app = FastAPI(
        title="copybot API",
        version="1",
        description="Budgeted Dynamic copy-trading: projections, config and dashboard (SPEC 9).",
    )
    app.state.engine = engine

    def read(fn: Any, *args: Any) -> Any:
        with engine.connect() as conn:
            return fn(conn, *args)

    def authorize(request: Request) -> JSONResponse | None:
        if token is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return JSONResponse(
                {"errors": ["authorization: send 'Authorization: Bearer <token>' (COPYBOT_API_TOKEN)"]},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    async def load_config() -> ConfigStore:
        try:
            return await config.load()
        except KafkaUnavailable as exc:
            raise HTTPException(503, detail=str(exc)) from exc

    async def write(request: Request, scope: Scope, leader: str | None) -> JSONResponse:
        denied = authorize(request)
        if denied is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _errors(422, ["body: not valid JSON"])
        try:
            edits = assignments_from_body(body)
            if leader is not None and not leader.strip():
                raise BodyError(["followedUserId: must not be empty"])
        except BodyError as exc:
            return _errors(422, exc.errors)
        try:
            result = await config.submit(scope, leader, edits)
        except AssignmentError as exc:
            return _errors(422, [str(exc)])
        except KafkaUnavailable as exc:
            return _errors(503, [str(exc)])
        if not result.outcome.accepted:
            return _errors(422, list(result.outcome.errors))
        return JSONResponse(
            {
                "changeId": result.change_id,
                "warnings": list(result.outcome.warnings),
                "publishedAt": result.published_at,
            }
        )

    # --- JSON API --------------------------------------------------------------------------------

    @app.get("/api/budgeted-dynamic/summary", tags=["budget"])
    def get_summary() -> list[dict[str, Any]]:
        """Per leader: B_u, E_u, r_u and our exposure (USDC; rMin, rMax, rU and utilization in %)."""
        result: list[dict[str, Any]] = read(summary)
        return result

    @app.get("/api/users/{leader_id}", tags=["budget"])
    def get_user(leader_id: str) -> dict[str, Any]:
        """A leader's summary row, recent attempts, skip-reason and clamp counts, and exposure history."""
        detail: dict[str, Any] | None = read(user_detail, leader_id)
        if detail is None:
            raise HTTPException(404, detail=f"no leader {leader_id!r} has been projected")
        return detail

    @app.get("/api/copy-attempts", tags=["attempts"])
    def get_attempts(
        leader: str | None = None,
        decision: str | None = Query(None, pattern="^(EXECUTE|SKIP)$"),
        reason: str | None = Query(None, description="the attempt's first reason code"),
        from_ms: int | None = Query(None, alias="from", description="decidedAtMs ≥ this"),
        to_ms: int | None = Query(None, alias="to", description="decidedAtMs < this"),
        limit: int = Query(50, ge=1, le=MAX_LIMIT),
        offset: int = Query(0, ge=0),
        cursor: str | None = Query(None, description="nextCursor of the previous page (instead of offset)"),
    ) -> dict[str, Any]:
        """Copy attempts (as emitted), newest first, with the total count of the filtered set."""
        q = AttemptQuery(leader, decision, reason, from_ms, to_ms, limit, offset, cursor)
        try:
            page: dict[str, Any] = read(list_attempts, q)
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from exc
        return page

    @app.get("/api/config/global", tags=["config"])
    async def get_global_config() -> dict[str, Any]:
        """The stored GLOBAL documents and the effective GLOBAL config."""
        return config_view(await load_config(), None)

    @app.post("/api/config/global", tags=["config"])
    async def post_global_config(request: Request) -> JSONResponse:
        """Change GLOBAL keys: body = sections of edits (null removes a key); 422 with per-key errors."""
        return await write(request, "GLOBAL", None)

    @app.get("/api/config/user/{leader_id}", tags=["config"])
    async def get_user_config(leader_id: str) -> dict[str, Any]:
        """The leader's stored USER documents (absent keys inherit) and its effective config."""
        return config_view(await load_config(), leader_id)

    @app.post("/api/config/user/{leader_id}", tags=["config"])
    async def post_user_config(leader_id: str, request: Request) -> JSONResponse:
        """Change a leader's overrides: body = sections of edits (null: inherit); 422 with per-key errors."""
        return await write(request, "USER", leader_id)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        try:
            read(lambda conn: conn.execute(text("SELECT 1")).scalar_one())
        except Exception as exc:  # any database failure means unhealthy
            return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        body: str = read(metrics_text)
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    # --- pages -------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview() -> HTMLResponse:
        return HTMLResponse(web.overview_page(read(summary)))

    @app.get("/config", response_class=HTMLResponse, include_in_schema=False)
    async def config_page(leader: str | None = None) -> HTMLResponse:
        rows: list[dict[str, Any]] = await run_in_threadpool(read, summary)
        problem = None
        try:
            current: ConfigStore = await config.load()
        except KafkaUnavailable as exc:
            current, problem = ConfigStore(), f"cannot read the current config: {exc}"
        leaders = sorted({r["id"] for r in rows} | set(current.user_docs))
        selected = leader if leader else (leaders[0] if leaders else None)
        page = web.config_page(
            global_docs=current.global_docs,
            global_effective=effective_json(current.global_effective),
            leaders=leaders,
            leader=selected,
            user_docs=current.user_docs.get(selected, {}) if selected else {},
            summary=rows,
            token_required=token is not None,
            problem=problem,
            config_version=current.version,
        )
        return HTMLResponse(page)

    @app.get("/users/{leader_id}", response_class=HTMLResponse, include_in_schema=False)
    def user_page(leader_id: str) -> HTMLResponse:
        detail = read(user_detail, leader_id)
        if detail is None:
            return HTMLResponse(web.not_found_page(leader_id), status_code=404)
        return HTMLResponse(web.user_page(detail))

    return app


# --- CLI ------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``copybot api``."""
    parser = subparsers.add_parser(
        "api",
        help="serve the HTTP API and the dashboard over the projection database",
        description=(
            "Serve the JSON API (docs at /docs) and the dashboard (/, /config, /users/{id}) over the tables "
            "written by `copybot project`. Config writes are validated like the worker does and published to "
            "Kafka (COPYBOT_BOOTSTRAP, COPYBOT_TOPIC_PREFIX). Writes need 'Authorization: Bearer <token>' "
            f"when {TOKEN_ENV} is set; a non-loopback --host requires it."
        ),
    )
    _arguments(parser)
    parser.set_defaults(func=_cmd_api)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", default=DEFAULT_DB, help=f"SQLite path or postgresql:// URL (default {DEFAULT_DB})"
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from streams.kafka.client import quiet_kafka_logs

    name = "copybot api"
    token = os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(args.host):
        print(
            f"{name}: refusing to bind {args.host} (not loopback) without {TOKEN_ENV}: set a token so config "
            "writes need 'Authorization: Bearer <token>', or bind 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    quiet_kafka_logs()
    try:
        app = create_app(args.db, KafkaConfigGateway(settings), token)
    except Exception as exc:  # an unusable database: say which
        print(f"{name}: database {args.db!r}: {exc}", file=sys.stderr)
        return 2
    print(f"{name}: serving http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m projections.api`` (the same as ``copybot api``)."""
    parser = argparse.ArgumentParser(prog="copybot api")
    _arguments(parser)
    return _cmd_api(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
