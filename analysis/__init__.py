"""Analyses over representation snapshots and logs.

One module per analysis; each exposes plain functions that return a typed result dataclass
(tables as pandas DataFrames, scalars as fields) implementing :class:`lee.results.Result`:
``summary()``, ``tables()``, ``save(dir)`` and ``load(dir)``. The dashboard, the scheduled jobs
and the exported reports all call the same functions and render the same result objects (or
load them from a finished run); figures are built from a result in :mod:`analysis.figures`,
never recomputed inside a plotting call.
"""

from lee.results import declare

for _name, _where in {
    "volatility": "analysis.volatility:VolatilityResult",
    "volatility-series": "analysis.volatility:VolatilitySeries",
    "health": "analysis.health:HealthReport",
    "health-thresholds": "analysis.health:HealthThresholds",
    "collapse": "analysis.collapse:CollapseResult",
    "collapse-comparison": "analysis.collapse:CollapseComparison",
    "clusters": "analysis.clusters:ClusterResult",
    "map-2d": "analysis.maps:Map2D",
    "importance": "analysis.importance:ImportanceResult",
    "segments": "analysis.segments:SegmentLift",
    "gains": "analysis.gains:GainsResult",
    "suite": "analysis.suite:SuiteResult",
    "lee-comparison": "analysis.lee_results:LeeComparison",
    "version-comparison": "analysis.compare:VersionComparison",
    "backward-compat": "analysis.compat:CompatResult",
    "gate-decision": "analysis.gate:GateDecision",
    "gate-rules": "analysis.gate:GateRules",
    "release-review": "analysis.compare.review:ReleaseReview",
    "variant-compare": "analysis.variant_compare:VariantComparison",
    "cluster-labels": "analysis.cluster_labels:ClusterLabelResult",
    "fidelity": "analysis.fidelity:FidelityResult",
}.items():
    declare(_name, _where)
