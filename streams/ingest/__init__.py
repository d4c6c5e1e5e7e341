"""``copybot ingest polymarket``: follow real leaders from Polymarket's public Data API (SPEC 14).

Library code (no argparse, no print): :mod:`.mapping` (rows -> events, pure), :mod:`.leaders` (the TOML
leaders file), :mod:`.ratelimit` (token buckets), :mod:`.http` (retries, exact decimals),
:mod:`.checkpoint`, :mod:`.sinks` (Kafka, dry run, tape), :mod:`.metrics`, :mod:`.poller` (the loop).
"""
