"""The read side: consumers that materialize copy attempts, config changes and snapshots into SQL, and
the HTTP API / dashboard over those tables. The API process never imports Faust. (Issue 4; not built yet.)
"""
