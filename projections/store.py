"""The projection store: owns the SQL of the projection tables, for SQLite and PostgreSQL alike.

One code path (SQLAlchemy Core) for both: a SQLite file (WAL mode, so readers such as the API never
block the projector) or a PostgreSQL URL. The tables are described in :mod:`projections.rows` (the query
contract). Each batch is one transaction: :meth:`ProjectionStore.batch` loads the rows the batch reads,
then writes its row changes **and** the consumed offsets, so a crash either keeps both or neither.

One projector writes to a database at a time (it reads, folds in Python, then writes); any number of
readers may query it. A database holds the projection of one topic prefix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    event,
    func,
    inspect,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from models.config import ConfigStore
from models.events import LeaderBook, OrderUpdated, PositionSettled, WireModel
from projections.rows import (
    BOOK_HISTORY_STEP_MS,
    AttemptRow,
    ConfigHistoryRow,
    LeaderBudgetRow,
    OrderKey,
    RowChanges,
    SnapshotKey,
    SnapshotRow,
    SourcePosition,
    WorkingSet,
)

DEFAULT_DB = "out/copybot.db"
CONFIG_STATE = "config"
"""``projection_state`` row holding the projector's config store (JSON)."""
IN_CHUNK = 500
"""Ids per ``IN (...)`` when loading rows (well under SQLite's bound-parameter limit)."""

metadata = MetaData()


_SQL_TYPES: dict[type, Any] = {str: Text, int: BigInteger, bool: Boolean, float: Double}
INT32_COLUMNS = frozenset({"trade_count", "source_partition"})
"""Columns that are 32-bit integers (everything else of type int is a BIGINT: micros, milliseconds)."""


def _column(name: str, hint: Any, primary_key: Sequence[str]) -> Column[Any]:
    """The column of a field typed `hint`: ``X | None`` is nullable, a Literal or a list is text."""
    args = get_args(hint)
    nullable = type(None) in args
    base = next(a for a in args if a is not type(None)) if nullable else hint
    if get_origin(base) is Literal or get_origin(base) is list:
        base = str
    sql_type = Integer if name in INT32_COLUMNS else _SQL_TYPES[base]
    key = name in primary_key
    return Column(name, sql_type, primary_key=key, nullable=nullable and not key)


def row_columns(row_type: type, primary_key: Sequence[str]) -> list[Column[Any]]:
    """The columns of the table behind a row dataclass: one per field, in field order.

    ``X | None`` is a nullable column; `primary_key` names the key columns. The dataclasses of
    :mod:`projections.rows` are the one definition of these tables' shape.
    """
    return [_column(name, hint, primary_key) for name, hint in get_type_hints(row_type).items()]


def event_columns(model: type[WireModel], primary_key: Sequence[str]) -> list[Column[Any]]:
    """The columns of a table of output events (:func:`projections.rows.event_fields`): the model's fields
    but ``kind`` (followedUserId as leader_id), then where each was read."""
    columns = [
        _column("leader_id" if name == "followed_user_id" else name, f.annotation, primary_key)
        for name, f in model.model_fields.items()
        if name != "kind"
    ]
    return [*columns, *row_columns(SourcePosition, primary_key)]


def _count_table(name: str, column: str) -> Table:
    """A per-leader count table: (leader_id, `column`) -> count."""
    return Table(
        name,
        metadata,
        Column("leader_id", Text, primary_key=True),
        Column(column, Text, primary_key=True),
        Column("count", BigInteger, nullable=False),
    )


copy_attempts = Table(
    "copy_attempts",
    metadata,
    *row_columns(AttemptRow, ["attempt_id"]),
    Index("ix_copy_attempts_leader_decided", "leader_id", "decided_at_ms"),
    Index("ix_copy_attempts_decided", "decided_at_ms", "attempt_id"),
    Index("ix_copy_attempts_decision", "decision", "decided_at_ms"),
)

leader_budget = Table("leader_budget", metadata, *row_columns(LeaderBudgetRow, ["leader_id"]))

leader_reason_counts = _count_table("leader_reason_counts", "reason")
leader_clamp_counts = _count_table("leader_clamp_counts", "clamp")

config_history = Table(
    "config_history",
    metadata,
    *row_columns(ConfigHistoryRow, ["source_partition", "source_offset"]),
    Index("ix_config_history_leader", "leader_id", "source_offset"),
    Index("ix_config_history_change", "change_id"),
)

leader_books = Table(
    "leader_books",
    metadata,
    *event_columns(LeaderBook, ["leader_id", "as_of_ms"]),
)

positions = Table(
    "positions",
    metadata,
    Column("leader_id", Text, primary_key=True),
    Column("asset_id", Text, primary_key=True),
    *(
        Column(name, BigInteger, nullable=False)
        for name in (
            "share_micros",
            "mark_price_micros",
            "cost_basis_micros",
            "value_micros",
            "unrealized_pnl_micros",
            "as_of_ms",
        )
    ),
)

settlements = Table(
    "settlements",
    metadata,
    *event_columns(PositionSettled, ["settlement_id"]),
    Index("ix_settlements_leader", "leader_id", "settled_at_ms"),
)

orders = Table(
    "orders",
    metadata,
    *event_columns(OrderUpdated, ["attempt_id", "leader_id"]),
    Index("ix_orders_leader", "leader_id"),
)

latest_snapshots = Table("latest_snapshots", metadata, *row_columns(SnapshotRow, ["scope", "leader_id"]))

projection_offsets = Table(
    "projection_offsets",
    metadata,
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)

projection_state = Table(
    "projection_state",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

TABLES = (
    copy_attempts,
    leader_budget,
    leader_reason_counts,
    leader_clamp_counts,
    config_history,
    latest_snapshots,
    leader_books,
    positions,
    settlements,
    orders,
    projection_offsets,
    projection_state,
)

Offsets = dict[tuple[str, int], int]
"""(topic, partition) -> the next offset to consume."""


class StoreError(RuntimeError):
    """The database cannot be opened or used; the message names it."""


def database_url(db: str) -> str:
    """A SQLAlchemy URL for `db`: a file path (SQLite), ``sqlite:///…``, or ``postgresql://…`` (psycopg 3)."""
    if db.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def stored_config(conn: Connection) -> ConfigStore:
    """The projector's config store as of its last committed batch (empty before any change)."""
    value = conn.execute(
        select(projection_state.c.value).where(projection_state.c.name == CONFIG_STATE)
    ).scalar_one_or_none()
    return ConfigStore() if value is None else ConfigStore.from_json(json.loads(value))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's BEGIN (below) start transactions instead of the driver's implicit ones, so the
    # rows a batch reads are inside the same transaction as what it writes.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: one projector writes


def _fields(row: object) -> dict[str, Any]:
    return asdict(row)  # type: ignore[call-overload,no-any-return]


class ProjectionStore:
    """The projection database: schema, offsets, the projector's config, and batch transactions."""

    def __init__(self, db: str = DEFAULT_DB) -> None:
        self.url = database_url(db)
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(self.url)
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
            self._insert: Any = sqlite.insert
        elif url.get_backend_name() == "postgresql":
            self.engine = create_engine(self.url, pool_pre_ping=True)
            self._insert = postgresql.insert
        else:
            raise StoreError(f"unsupported database {db!r}: give a file path or a postgresql:// URL")
        self.display = url.render_as_string(hide_password=True)

    def create_schema(self) -> None:
        """Create the tables and indexes that are missing (idempotent). A table there in another shape
        (written by another copybot version) is a :class:`StoreError`: ``copybot project --rebuild``
        recreates the tables."""
        metadata.create_all(self.engine)
        stale = self._stale_tables()
        if stale:
            raise StoreError(
                f"{self.display}: the tables {', '.join(stale)} have another shape than this copybot's "
                "(an older version wrote them): run `copybot project --rebuild` to recreate and refill them"
            )

    def _stale_tables(self) -> list[str]:
        inspector = inspect(self.engine)
        stale = []
        for table in TABLES:
            columns = {c["name"] for c in inspector.get_columns(table.name)}
            key = set(inspector.get_pk_constraint(table.name)["constrained_columns"])
            if columns != {c.name for c in table.columns} or key != {c.name for c in table.primary_key}:
                stale.append(table.name)
        return stale

    def close(self) -> None:
        self.engine.dispose()

    def reset(self) -> None:
        """Drop and recreate every projection table (``--rebuild``, also of tables in an older shape): the
        next run re-consumes from the beginning."""
        metadata.drop_all(self.engine)
        metadata.create_all(self.engine)

    def offsets(self) -> Offsets:
        """The stored next offset of every (topic, partition) projected so far."""
        with self.engine.begin() as conn:
            rows = conn.execute(select(projection_offsets)).all()
        return {(r.topic, r.partition): r.next_offset for r in rows}

    @contextmanager
    def batch(self) -> Iterator[BatchTransaction]:
        """One transaction: load what a batch reads, then write its changes and offsets; commit at exit."""
        with self.engine.begin() as conn:
            yield BatchTransaction(conn, self._insert)


class BatchTransaction:
    """The SQL of one batch, inside the store's transaction."""

    def __init__(self, conn: Connection, insert: Any) -> None:
        self._conn = conn
        self._insert = insert

    # --- reads --------------------------------------------------------------------------------

    def config(self) -> ConfigStore:
        return stored_config(self._conn)

    def load(
        self,
        attempt_ids: Iterable[str],
        leader_ids: Iterable[str] | None,
        snapshot_keys: Iterable[SnapshotKey],
        order_keys: Iterable[OrderKey] = (),
    ) -> WorkingSet:
        """The stored rows a batch reads; `leader_ids` None loads every leader row."""
        working = WorkingSet(config=self.config(), all_leaders=leader_ids is None)
        c = copy_attempts.c
        for chunk in _chunks(sorted(set(attempt_ids))):
            working.known_attempt_ids.update(
                self._conn.execute(select(c.attempt_id).where(c.attempt_id.in_(chunk))).scalars()
            )
        query = select(leader_budget)
        chunks = [None] if leader_ids is None else _chunks(sorted(set(leader_ids)))
        for leader_chunk in chunks:
            q = query if leader_chunk is None else query.where(leader_budget.c.leader_id.in_(leader_chunk))
            for r in self._conn.execute(q).mappings():
                working.leaders[r["leader_id"]] = LeaderBudgetRow(**r)
        for r in self._by_key(latest_snapshots, ("scope", "leader_id"), snapshot_keys):
            row = SnapshotRow(**r)
            working.snapshots[row.key] = row
        for r in self._by_key(orders, ("attempt_id", "leader_id"), order_keys, orders.c.revision):
            working.order_revisions[r["attempt_id"], r["leader_id"]] = r["revision"]
        return working

    def _by_key(
        self, table: Table, key: Sequence[str], values: Iterable[tuple[Any, ...]], *extra: Any
    ) -> Iterator[Any]:
        """The stored rows of `table` whose `key` columns are one of `values` (only the key and `extra`
        columns when `extra` names some)."""
        key_columns = [table.c[name] for name in key]
        columns = tuple_(*key_columns)
        query = select(*key_columns, *extra) if extra else select(table)
        for chunk in _chunks(sorted(set(values))):
            yield from self._conn.execute(query.where(columns.in_(chunk))).mappings()

    # --- writes -------------------------------------------------------------------------------

    def write(self, changes: RowChanges, offsets: Offsets) -> None:
        """Write a batch's row changes and the offsets it consumed up to."""
        conn, ins = self._conn, self._insert
        if changes.attempts:
            conn.execute(copy_attempts.insert(), [_fields(a) for a in changes.attempts])
        for table, column, counts in (
            (leader_reason_counts, "reason", changes.reason_counts),
            (leader_clamp_counts, "clamp", changes.clamp_counts),
        ):
            if counts:
                stmt = ins(table)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["leader_id", column],
                        set_={"count": table.c["count"] + stmt.excluded["count"]},
                    ),
                    [{"leader_id": k[0], column: k[1], "count": n} for k, n in sorted(counts.items())],
                )
        self._upsert(leader_budget, ["leader_id"], [_fields(r) for r in changes.leaders.values()])
        self._upsert(
            latest_snapshots, ["scope", "leader_id"], [_fields(r) for r in changes.snapshots.values()]
        )
        self._upsert(
            config_history,
            ["source_partition", "source_offset"],
            [_fields(r) for r in changes.config_history],
        )
        self._write_book_events(changes)
        if changes.config is not None:
            value = json.dumps(changes.config.to_json(), sort_keys=True, separators=(",", ":"))
            self._upsert(projection_state, ["name"], [{"name": CONFIG_STATE, "value": value}])
        self._upsert(
            projection_offsets,
            ["topic", "partition"],
            [{"topic": t, "partition": p, "next_offset": o} for (t, p), o in sorted(offsets.items())],
        )

    def _write_book_events(self, changes: RowChanges) -> None:
        """Books, positions (a leader's newest book replaces its rows), settlements and orders."""
        self._write_books(changes)
        for chunk in _chunks(sorted(changes.positions)):
            self._conn.execute(delete(positions).where(positions.c.leader_id.in_(chunk)))
        rows = [row for leader in sorted(changes.positions) for row in changes.positions[leader]]
        if rows:
            self._conn.execute(positions.insert(), rows)
        if changes.settlements:  # a settlement happens once: a redelivered one keeps where it was first read
            stmt = self._insert(settlements).on_conflict_do_nothing(index_elements=["settlement_id"])
            self._conn.execute(stmt, list(changes.settlements.values()))
        self._upsert(orders, ["attempt_id", "leader_id"], list(changes.orders.values()))

    def _write_books(self, changes: RowChanges) -> None:
        """The leaderBook history: one book per (leader, asOfMs), replaced only by a different book (a
        redelivery changes nothing); then the retention rule (:func:`projections.rows.book_thinning_cut`)."""
        b = leader_books.c
        if changes.books:
            stmt = self._insert(leader_books)
            content = [
                c.name for c in leader_books.columns if not c.primary_key and not c.name.startswith("source_")
            ]
            differs = or_(*(b[name].is_distinct_from(stmt.excluded[name]) for name in content))
            others = {c.name: stmt.excluded[c.name] for c in leader_books.columns if not c.primary_key}
            self._conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["leader_id", "as_of_ms"], set_=others, where=differs
                ),
                [changes.books[key] for key in sorted(changes.books)],
            )
        for leader, cut in sorted(changes.book_thinning.items()):
            aged = and_(b.leader_id == leader, b.as_of_ms < cut)
            kept = select(func.max(b.as_of_ms)).where(aged).group_by(b.as_of_ms // BOOK_HISTORY_STEP_MS)
            self._conn.execute(delete(leader_books).where(aged, b.as_of_ms.not_in(kept.scalar_subquery())))

    def _upsert(self, table: Table, key: list[str], rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        stmt = self._insert(table)
        others = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key}
        self._conn.execute(stmt.on_conflict_do_update(index_elements=key, set_=others), rows)


def _chunks(values: list[Any]) -> list[list[Any]]:
    return [values[i : i + IN_CHUNK] for i in range(0, len(values), IN_CHUNK)]
