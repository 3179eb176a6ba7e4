"""Conduit's side-by-side benchmarks: never part of the test run.

Run them with ``python -m benchmarks`` (``--help`` for the options). Each
section measures Conduit, the raw driver doing the same inserts, and the
``eventsourcing`` library on the same engine, in one run, and prints the ratios
against the targets; ``--write docs/benchmarks.md`` records them.
"""
