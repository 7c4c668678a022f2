"""Out of core, measured (issue 18): each snapshot analysis runs in a subprocess on a table whose
decoded vectors are larger than its memory bound, and the process' peak resident memory rises by
less than the bound.

How it is measured: the child imports the analyses and runs the same analysis once on a tiny table
(lazy imports, BLAS buffers, thread pools and allocator arenas are then part of the baseline, as
they would be of any process), then resets its peak-RSS counter (``/proc/self/clear_refs`` ``5``:
VmHWM := VmRSS), runs the analysis on the large table within ``memory_mb`` and reads VmHWM; the
increase is VmHWM minus the RSS at the reset. VmHWM counts everything resident — anonymous memory,
Arrow's pool, and the snapshot file's mapped pages (the reader drops them after each batch). An
address-space cap (RLIMIT_AS) cannot be used: numpy, OpenBLAS and Arrow reserve far more address
space than they touch. A control child loads the whole table (``Snapshot.load``) and must rise by
more than the bound, so the measurement does see a table's worth of memory.

Tables: 200,000 ids × 128 float32 (97.7 MiB decoded per table, 2 snapshots); bounds 64 MiB (health,
collapse with a 5,000-row RankMe sample: the default 25,600 rows × 128 dims alone hold 63 MiB
while their SVD runs, and the bound must cover them) and 80 MiB (volatility: two tables' ids and
per-id arrays; clusters: a 10,000-row fit sample) and 96 MiB (compare: two tables' ids, the join and
per-id results, CKA's moments, 2,000-id alignment, neighbour and cluster samples, 200-row drift
samples; :mod:`analysis.compare.budget` puts its least bound at 89 MiB). About 35 s on 2 cores, most
of it child start-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lee.snapshot import EmbeddingTable, write_snapshot

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
N, D = 200_000, 128
REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import gc, json, sys
sys.path.insert(0, {repo!r})
import numpy as np, pandas as pd
from analysis.clusters import cluster_snapshot
from analysis.collapse import collapse_of_table
from analysis.health import table_stats
from analysis.volatility import cosine_by_id
from analysis.compare import compare_versions
from lee.snapshot import SnapshotStore

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

def events(ids):
    rng = np.random.default_rng(0)
    users = rng.choice(ids, 20_000)
    return pd.DataFrame({{"user_id": users, "item_id": rng.integers(0, 50, users.size),
                         "click": (rng.random(users.size) < 0.05).astype(np.int64),
                         "domain": np.ones(users.size, np.int64)}})

def run(root, mb):
    store = SnapshotStore(root)
    a, b = store.open("v", "{t0}"), store.open("v", "{t1}")
    if {analysis!r} == "health":
        return table_stats(b, "UR", memory_mb=mb).l2_mean
    if {analysis!r} == "collapse":
        return collapse_of_table(b, "UR", memory_mb=mb, rankme_sample=5_000).effective_rank
    if {analysis!r} == "volatility":
        return float(cosine_by_id(a, b, "UR", memory_mb=mb).cosine.mean())
    if {analysis!r} == "clusters":
        ev = EV[root]
        res = cluster_snapshot(b, "UR", k=8, events=ev, memory_mb=mb, fit_sample=10_000, silhouette_sample=2_000,
                               n_init=2)
        assert res.fit_rows == (10_000 if root == {big!r} else None), res.fit_rows
        return res.inertia
    if {analysis!r} == "compare":
        res = compare_versions(a, b, "UR", memory_mb=mb, fit_sample=2_000, knn_max=2_000, drift_sample=200,
                               mmd_permutations=50, classifier_permutations=20)
        assert res.n_shared == (200_000 if root == {big!r} else 2_000) and res.knn_rows.size == 2_000, res.n_shared
        return res.cka
    if {analysis!r} == "load":
        return float(b.load("UR").vectors[0, 0])

EV = {{r: events(SnapshotStore(r).open("v", "{t1}").load_ids("UR")) for r in ({tiny!r}, {big!r})}}
run({tiny!r}, {mb})            # warm-up: the same code paths on a tiny table
gc.collect()
base = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")   # VmHWM := VmRSS
value = run({big!r}, {mb})
print("@@" + json.dumps({{"base": base, "peak": status("VmHWM"), "value": value}}))
"""


def _write(root: Path, n: int, seed: int) -> None:
    """Two snapshots of variant ``v``, written in 50,000-row pieces (the test process never holds a
    whole table either): the later one moves every vector a little and shuffles nothing."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(4 * n)[:n].astype(np.int64)
    a = rng.standard_normal((n, D), dtype=np.float32)
    write_snapshot(root, "v", T0, {"UR": EmbeddingTable(ids, a)})
    a += 0.1 * rng.standard_normal((n, D), dtype=np.float32)
    write_snapshot(root, "v", T1, {"UR": EmbeddingTable(ids, a)})


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("memcap")
    _write(d / "tiny", 2_000, 1)
    _write(d / "big", N, 2)
    return d / "tiny", d / "big"


def _child(analysis: str, roots: tuple[Path, Path], mb: float) -> dict:
    tiny, big = roots
    code = CHILD.format(repo=str(REPO), analysis=analysis, tiny=str(tiny), big=str(big), mb=mb, t0=T0, t1=T1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout.split("@@", 1)[1])
    doc["increase_mb"] = (doc["peak"] - doc["base"]) / 2**20
    print(f"{analysis}: bound {mb} MiB, peak RSS +{doc['increase_mb']:.1f} MiB "
          f"(baseline {doc['base'] / 2**20:.0f} MiB)")
    return doc


@pytest.mark.parametrize("analysis,mb", [("health", 64), ("collapse", 64), ("volatility", 80), ("clusters", 80),
                                         ("compare", 96)])
def test_analysis_stays_within_its_memory_bound(roots, analysis, mb):
    decoded_mb = N * D * 4 / 2**20
    assert decoded_mb > mb    # the table does not fit the bound (volatility joins two such tables)
    doc = _child(analysis, roots, mb)
    assert 0 < doc["increase_mb"] < mb
    assert np.isfinite(doc["value"])


def test_control_loading_the_table_exceeds_the_bound(roots):
    """The measurement sees memory: loading the whole table raises the peak by more than its size."""
    doc = _child("load", roots, 64)
    assert doc["increase_mb"] > N * D * 4 / 2**20 > 64
