"""Static value lists for argparse ``choices``, so that building the parser imports nothing heavy.

The enums these mirror live beside the code that uses them (``lee.device.Device`` imports torch,
``analysis.importance.MaskingMode`` imports scipy and torch, ...); importing them only to list
their values made every ``lee`` command, ``--help`` included, pay 2–5 s of imports. Each tuple
here is checked against its enum by ``tests/test_startup.py``, so the two cannot drift apart.
"""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")                                   # lee.device.Device
USAGES = ("UR", "IR", "UR+IR", "CR", "CR_user", "CR_item")          # lee.evaluator.inject.Usage
FUSIONS = ("concat", "gate", "iim")                                 # lee.evaluator.models.FUSIONS
MASKING_MODES = ("zero", "mean", "permutation")                     # analysis.importance.MaskingMode
KMEANS_BACKENDS = ("auto", "numpy", "faiss", "torch", "sklearn")   # analysis.clusters.KMeansBackend
MAP_METHODS = ("pca", "tsne", "umap")                               # analysis.maps.MapMethod
SCALES = ("large", "medium", "small", "tiny")                       # sorted(lee.world.config.SCALES)
DATA_FORMATS = ("csv", "parquet", "jsonl", "libfm", "libsvm", "criteo", "recbole", "movielens", "mind",
                "obd")                                              # lee.data.importers.FORMATS
