"""copybot's pure domain: wire events, config, grouping, buffering, sizing and the decision.

Nothing here does IO, reads a clock or makes random ids: time and ids arrive as event data.
The replay command, the Faust agents and the benchmarks all call :func:`models.engine.process`.
"""
