"""LEE Workbench core: snapshots, the planted world, the upstream model and the evaluator."""

import os

__version__ = "0.1.0"

# OpenMP threads that wait for work sleep instead of spinning (unless the user chose otherwise). The
# proxy's small matrix products open a parallel region per operation; with libgomp's default
# (spinning) every region stalls whenever another process holds a core. Measured on the 2-core
# machine with one core busy, one small-world baseline proxy run at 2 torch threads: 30-41 s
# spinning, 5.6 s passive (4.2 s at 1 thread). libgomp reads the variable when torch loads, so it
# takes effect whenever ``lee`` is imported before torch: every ``lee`` command, the dashboard, Ray
# workers.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
