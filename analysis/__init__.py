"""Analyses over representation snapshots and logs.

One module per analysis; each exposes plain functions that return a typed result dataclass
(tables as pandas DataFrames, scalars as fields). The dashboard, the scheduled jobs and the
exported reports all call the same functions and render the same result objects; figures are
built from a result in :mod:`analysis.figures`, never recomputed inside a plotting call.
"""
