"""The read side: consumers that materialize copy attempts, config changes and snapshots into SQL, and
the HTTP API / dashboard over those tables. The API process never imports Faust. (Issue 4; not built yet.)

Built so far: the projection consumer (``copybot project``, :mod:`projections.consumer`), the pure
event -> row changes layer with the tables' query contract (:mod:`projections.rows`), and the store that
owns the SQL for SQLite and PostgreSQL (:mod:`projections.store`).
"""
