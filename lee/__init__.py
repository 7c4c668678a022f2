"""LEE Workbench core: snapshots, the planted world, the upstream model and the evaluator."""

__version__ = "0.1.0"
