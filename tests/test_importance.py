"""Feature-masking importance: sklearn permutation semantics, exact zero/mean masks, planted ranking."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.inspection import permutation_importance

from analysis.importance import MaskTarget, importance_for_snapshot, mask_targets, masking_importance
from lee.errors import InputError
from lee.evaluator.data import stream_from_world
from lee.evaluator.inject import inject
from lee.evaluator.stream import rep_rows_for, run_stream
from lee.metrics import roc_auc
from lee.snapshot import SnapshotStore
from lee.world.planted import write_planted_variants


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("imp")
    write_planted_variants(tiny_world, root, variants=["oracle", "random"], n_snapshots=1)
    store = SnapshotStore(root)
    stream = stream_from_world(tiny_world)
    inj = inject(store.latest("oracle"), "UR+IR", stream.user_ids, stream.item_ids, stream.user_row, stream.item_row)
    run = run_stream(stream, inj, seed=0, keep_model=True)
    return stream, inj, run, store


class _Wrapped(ClassifierMixin, BaseEstimator):
    """The trained proxy seen by sklearn: X = [field codes..., representation rows...]."""

    def __init__(self, model=None, n_fields=0):
        self.model = model
        self.n_fields = n_fields

    def fit(self, X, y):
        self.classes_ = np.array([0.0, 1.0])
        return self

    def decision_function(self, X):
        x = torch.from_numpy(np.ascontiguousarray(X[:, : self.n_fields]))
        rows = [torch.from_numpy(np.ascontiguousarray(X[:, k])) for k in range(self.n_fields, X.shape[1])]
        with torch.no_grad():
            return self.model(x, rows).numpy().astype(np.float64)


def test_permutation_matches_sklearn(trained):
    stream, inj, run, _ = trained
    lo, hi = run.window_edges[-1]
    rows = rep_rows_for(stream, inj)
    X = np.column_stack([stream.x[lo:hi].numpy()] + [r[lo:hi].numpy() for r in rows])
    y = stream.y[lo:hi].numpy()
    model = run.model.eval()
    est = _Wrapped(model, stream.x.shape[1]).fit(X, y)
    ref = permutation_importance(est, X, y, scoring="roc_auc", n_repeats=4, random_state=3)
    targets = ([MaskTarget(f, "feature", fields=(k,)) for k, f in enumerate(stream.fields)]
               + [MaskTarget(f"rep{t}", "representation", tables=(t,)) for t in range(len(rows))])
    ours = masking_importance(model, stream, inj, mode="permutation", targets=targets, events=(lo, hi),
                              n_repeats=4, n_boot=5, seed=3)
    for k, t in enumerate(targets):
        np.testing.assert_allclose(ours.drops[t.name], ref.importances[k], atol=1e-12)
    assert ours.base_auc == pytest.approx(roc_auc(y, est.decision_function(X)), abs=1e-15)


def test_zero_and_mean_masks_equal_edited_weights(trained):
    stream, inj, run, _ = trained
    lo, hi = run.window_edges[-1]
    k = stream.fields.index("item")
    res = {m: masking_importance(run.model, stream, inj, mode=m, events=(lo, hi), n_boot=5,
                                 targets=[MaskTarget("item", "feature", fields=(k,))]) for m in ("zero", "mean")}
    y = stream.y[lo:hi].numpy()
    rows = [r[lo:hi] for r in rep_rows_for(stream, inj)]
    x = stream.x[lo:hi]
    for mode in ("zero", "mean"):
        edited = copy.deepcopy(run.model).eval()
        with torch.no_grad():
            w = edited.emb[k].weight
            fill = torch.zeros(w.shape[1]) if mode == "zero" else w[x[:, k]].mean(0)
            w[:] = fill  # every item id now maps to the masked value
            auc = roc_auc(y, edited(x, rows).numpy())
        assert res[mode].drops["item"][0] == pytest.approx(res[mode].base_auc - auc, abs=1e-9)
        assert res[mode].n_repeats == 1


def test_oracle_representation_ranks_first(trained):
    stream, inj, run, store = trained
    for mode in ("permutation", "zero", "mean"):
        res = masking_importance(run.model, stream, inj, mode=mode, events=run.window_edges[-1], n_repeats=3,
                                 n_boot=30)
        singles = res.table[res.table["kind"] != "group"]
        assert singles.iloc[0]["kind"] == "representation", (mode, res.table)
        rep = res.table.set_index("target").loc["representation"]
        assert rep["significant"] and rep["ci_low"] > 0.03
    # a random representation carries nothing: masking it costs nothing significant
    rnd = importance_for_snapshot(stream, store.latest("random"), n_repeats=3, n_boot=30)
    row = rnd.table.set_index("target").loc["representation"]
    assert abs(row["drop"]) < 0.01 and not row["significant"]
    assert rnd.ranking("representation")  # ranked within its kind too


def test_targets_and_groups(trained):
    stream, inj, _, _ = trained
    names = [t.name for t in mask_targets(stream, inj)]
    assert names[: len(stream.fields)] == list(stream.fields)
    assert {"user side", "item side", "context", "representation", "representation:UR"} <= set(names)
    assert "representation" not in [t.name for t in mask_targets(stream, None)]
    with pytest.raises(InputError, match="unknown field"):
        mask_targets(stream, inj, groups={"bad": ("user", "nope")})


def test_bad_inputs(trained):
    stream, inj, run, _ = trained
    with pytest.raises(InputError, match="unknown masking mode"):
        masking_importance(run.model, stream, inj, mode="drop")
    with pytest.raises(InputError, match="injected table"):
        masking_importance(run.model, stream, None)
    with pytest.raises(InputError, match="inside the stream"):
        masking_importance(run.model, stream, inj, events=(0, len(stream) + 5))
    y = stream.y.numpy()
    k = int(np.flatnonzero(y == 0)[0])
    with pytest.raises(InputError, match="only one class"):
        masking_importance(run.model, stream, inj, events=(k, k + 1))
    with pytest.raises(InputError, match="n_repeats"):
        masking_importance(run.model, stream, inj, n_repeats=0)
    with pytest.raises(InputError, match="n_boot at least 2"):
        masking_importance(run.model, stream, inj, n_boot=1)
    run.model.train()
    masking_importance(run.model, stream, inj, mode="zero", n_boot=2, targets=mask_targets(stream, inj)[:1])
    assert run.model.training  # the model's mode is restored after masking
    with pytest.raises(InputError, match="ProxyCTR"):
        masking_importance(torch.nn.Linear(2, 1), stream, inj)
