"""Snapshot health: exact statistics, planted anomalies flagged, healthy snapshots not, rollback target."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.health import HealthThresholds, snapshot_health, table_stats
from lee.errors import ConfigError, InputError
from lee.snapshot import EmbeddingTable, SnapshotStore, write_snapshot
from lee.world.anomalies import ANOMALIES, plant_anomalies
from lee.world.planted import PLANTED_VARIANTS, write_planted_variants


def test_table_stats_closed_form(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((500, 6)).astype(np.float32)
    v[3] = np.nan
    v[10, 2] = np.inf
    path = write_snapshot(tmp_path, "v", "2026-01-01T00:00:00Z", {"UR": EmbeddingTable(np.arange(500), v)},
                          allow_nonfinite=True)
    from lee.snapshot import Snapshot

    s = table_stats(Snapshot.open(path), "UR", chunk_rows=64)  # many chunks
    ok = np.isfinite(v).all(1)
    x = v[ok].astype(np.float64)
    assert s.rows == 500 and s.nonfinite_rows == 2
    assert s.mean == pytest.approx(x.mean(), abs=1e-12)
    assert s.variance == pytest.approx(x.var(), rel=1e-9)
    assert s.l1_mean == pytest.approx(np.abs(x).sum(1).mean(), rel=1e-9)
    assert s.l2_mean == pytest.approx(np.linalg.norm(x, axis=1).mean(), rel=1e-9)
    assert (s.min, s.max) == (pytest.approx(x.min()), pytest.approx(x.max()))
    np.testing.assert_allclose(s.dim_std, x.std(0), rtol=1e-9)
    z = np.abs(x - x.mean(0)) / x.std(0)
    assert s.extreme_share == pytest.approx((z > 6.0).mean())
    s2 = table_stats(Snapshot.open(path), "UR", extreme_z=2.0)
    assert s2.extreme_share == pytest.approx((z > 2.0).mean())


def test_planted_anomalies_flagged_and_rollback(tiny_world, tmp_path):
    write_planted_variants(tiny_world, tmp_path, variants=["oracle"], n_snapshots=4)
    planted = plant_anomalies(tmp_path, "oracle", seed=1)
    report = snapshot_health(tmp_path, "oracle")
    flagged = set(report.flagged_times)
    assert flagged == {planted["rescaled"], planted["nan_rows"], planted["collapsed_dim"]}
    assert report.rollback_target == planted["healthy"]
    t = report.table.set_index(["time", "table"])
    # every table of each broken snapshot is flagged, for the planted reason
    for kind in ("UR", "IR", "CR_user", "CR_item"):
        assert "× the reference" in t.loc[(planted["rescaled"], kind), "reasons"]
        assert t.loc[(planted["rescaled"], kind), "scale_ratio"] == pytest.approx(3.0, rel=0.01)
        assert "NaN/Inf" in t.loc[(planted["nan_rows"], kind), "reasons"]
        assert "dead dimension" in t.loc[(planted["collapsed_dim"], kind), "reasons"]
    assert report.summary()["flagged"] == 3 and report.summary()["latest_healthy"] is False
    assert set(ANOMALIES) == set(planted)


@pytest.mark.parametrize("variant", PLANTED_VARIANTS)
def test_healthy_planted_variants_are_not_flagged(tiny_world, tmp_path, variant):
    write_planted_variants(tiny_world, tmp_path, variants=[variant], n_snapshots=4)
    report = snapshot_health(tmp_path, variant)
    assert report.flagged_times == [], report.table[["time", "table", "reasons"]]
    assert report.rollback_target == SnapshotStore(tmp_path).times(variant)[-1]
    # rate of change between consecutive healthy snapshots is small (planted drift only)
    assert report.table["rate_l2_mean"].abs().max() < 0.05


def test_thresholds_are_configurable(tiny_world, tmp_path):
    write_planted_variants(tiny_world, tmp_path, variants=["oracle"], n_snapshots=2)
    planted = plant_anomalies(tmp_path, "oracle")
    lax = HealthThresholds(max_scale_ratio=5.0, max_extreme_share=1.0, max_mean_shift=10.0)
    report = snapshot_health(tmp_path, "oracle", thresholds=lax, kinds=["UR"])
    assert planted["rescaled"] not in report.flagged_times
    assert planted["nan_rows"] in report.flagged_times
    assert set(report.table["table"]) == {"UR"}
    with pytest.raises(ConfigError, match="unknown key"):
        HealthThresholds.from_dict({"max_scale": 2})
    with pytest.raises(ConfigError, match="max_scale_ratio"):
        HealthThresholds(max_scale_ratio=0.9)
    with pytest.raises(InputError, match="no snapshots"):
        snapshot_health(tmp_path, "oracle", times=[])


def test_dead_dimension_relative_to_the_reference(tmp_path):
    """A dim constant from the first snapshot is how the table is (counted, not flagged); a dim
    that dies later is flagged."""
    rng = np.random.default_rng(2)
    v = rng.standard_normal((300, 5)).astype(np.float32)
    v[:, 1] *= 0.01            # small but alive
    v[:, 3] = 0.7              # constant from the start (a ReLU unit that never fires)
    for k in range(3):
        write_snapshot(tmp_path, "b", 1_767_225_600 + 300 * k, {"UR": EmbeddingTable(np.arange(300), v)})
    later = v.copy()
    later[:, 0] = 0.2          # dies later
    write_snapshot(tmp_path, "b", 1_767_225_600 + 900, {"UR": EmbeddingTable(np.arange(300), later)})
    rep = snapshot_health(tmp_path, "b")
    assert rep.table["dead_dims"].iloc[0] == 1
    assert len(rep.flagged_times) == 1 and "1 dead dimension" in rep.table["reasons"].iloc[-1]
    assert rep.rollback_target == SnapshotStore(tmp_path).times("b")[2]


def test_cr_table_with_mostly_dead_relu_units_is_healthy(tmp_path):
    """A CR table read from a ReLU layer: 20 of 32 units never fire, 3 fire for a handful of rows
    and fall silent now and then, one starts firing late. None of that is a fault of a snapshot
    (with the median std over all dims, 0 here, snapshots 1, 3, 5 were flagged broken with '3 dead
    dimensions' and moved by 7e12 std). A unit that had real spread and dies is flagged, 3 times
    (rebaseline_after) while it stays dead, then it is dead in the reference: a unit that died in
    training does not make every later snapshot broken."""
    rng = np.random.default_rng(8)
    n, t0 = 2000, 1_767_225_600
    base = rng.standard_normal((n, 32))
    for k in range(10):
        x = np.maximum(base + 0.05 * rng.standard_normal(base.shape), 0.0)
        x[:, :20] = 0.0                                   # dead from the start
        for j in (20, 21, 22):                            # rare units: 5 rows, silent in odd snapshots
            x[:, j] = 0.0
            if k % 2 == 0:
                x[rng.choice(n, 5, replace=False), j] = 1e-3
        if k < 3:
            x[:, 23] = 0.0                                # wakes up at snapshot 3
        if k >= 5:
            x[:, 31] = 0.0                                # a live unit dies at snapshot 5, for good
        write_snapshot(tmp_path, "cr", t0 + 300 * k, {"CR_user": EmbeddingTable(np.arange(n), x.astype(np.float32))})
    rep = snapshot_health(tmp_path, "cr")
    times = SnapshotStore(tmp_path).times("cr")
    assert rep.flagged_times == times[5:8], rep.table[["time", "reasons"]]
    assert set(rep.table["reasons"].iloc[5:8]) == {"1 dead dimension(s) (std < 0.05 × reference)"}
    assert rep.table["broken"].iloc[5:8].all() and rep.table["mean_shift"].iloc[1:5].max() < 0.5
    assert rep.rollback_target == times[9] and rep.latest_usable == times[9]
    # NaN rows never become normal
    for k in range(10, 14):
        x = np.maximum(base, 0.0).astype(np.float32)
        x[:, :20] = 0.0
        x[:, 31] = 0.0
        x[:3] = np.nan
        write_snapshot(tmp_path, "cr", t0 + 300 * k, {"CR_user": EmbeddingTable(np.arange(n), x)}, allow_nonfinite=True)
    rep = snapshot_health(tmp_path, "cr")
    assert rep.table["broken"].iloc[10:].all() and rep.rollback_target == times[9]


def test_level_shift_rebaselines(tmp_path):
    """A lasting rescale is flagged rebaseline_after times, then becomes the new normal; NaN never does."""
    rng = np.random.default_rng(4)
    base = rng.standard_normal((400, 8)).astype(np.float32)
    scales = [1, 1, 1, 3, 3, 3, 3, 3]
    for k, sc in enumerate(scales):
        v = (base + 0.01 * rng.standard_normal(base.shape)).astype(np.float32) * sc
        write_snapshot(tmp_path, "v", 1_767_225_600 + 300 * k, {"UR": EmbeddingTable(np.arange(400), v)})
    rep = snapshot_health(tmp_path, "v", thresholds=HealthThresholds(rebaseline_after=3))
    flags = rep.snapshots["healthy"].tolist()
    assert flags == [True, True, True, False, False, False, True, True]


def test_dim_change_and_missing_table(tmp_path):
    from lee.errors import InputError as _InputError

    rng = np.random.default_rng(6)

    def table(n: int, dim: int) -> EmbeddingTable:
        return EmbeddingTable(np.arange(n), rng.standard_normal((n, dim)).astype(np.float32))

    write_snapshot(tmp_path, "v", 1_767_225_600, {"UR": table(50, 4), "IR": table(9, 4)})
    write_snapshot(tmp_path, "v", 1_767_225_900, {"UR": table(50, 4)})
    rep = snapshot_health(tmp_path, "v", kinds=["UR", "IR"])
    t = rep.table.set_index(["time", "table"])
    assert "missing" in t["reasons"].iloc[-1] and len(rep.flagged_times) == 1
    write_snapshot(tmp_path, "d", 1_767_225_600, {"UR": table(50, 4)})
    write_snapshot(tmp_path, "d", 1_767_225_900, {"UR": table(50, 6)})
    with pytest.raises(_InputError, match="dim 6 differs"):
        snapshot_health(tmp_path, "d")
