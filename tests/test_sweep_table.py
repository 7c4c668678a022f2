"""The one reader of a `lee sweep --table` CSV: ΔAUC by layer × dim, and a clear error for anything else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lee.errors import InputError
from lee.evaluator.sweep import read_sweep_figure, sweep_figure_data

LAYERS = ["mix.cross.0", "mix.cross.1", "ads.mlp.0", "ads.mlp.1"]


def _sweep_table() -> pd.DataFrame:
    """A table shaped as layer_sweep writes it: one row per (layer, dim), a narrow layer lacking d64."""
    rows = []
    for k, layer in enumerate(LAYERS):
        branch, kind, depth = layer.split(".")
        for dim in (16, 64):
            if layer == "ads.mlp.1" and dim == 64:
                continue
            rows.append({"layer": layer, "branch": branch, "kind": kind, "depth": int(depth), "dim": dim,
                         "delta_auc": round(0.01 * k + 0.001 * dim / 16, 6), "ci_low": 0.0, "ci_high": 0.1,
                         "verdict": "better", "auc": 0.7, "rela_impr": 3.0})
    return pd.DataFrame(rows)


def test_csv_round_trip_gives_the_layer_by_dim_table(tmp_path):
    table = _sweep_table()
    path = tmp_path / "sweep.csv"
    table.to_csv(path, index=False)  # exactly what `lee sweep --table` and the demo write
    fig = read_sweep_figure(path)
    assert list(fig.index) == LAYERS                      # the sweep's layer order, not alphabetical
    assert list(fig.columns) == [16, 64]
    for row in table.itertuples():
        assert fig.loc[row.layer, row.dim] == row.delta_auc
    assert np.isnan(fig.loc["ads.mlp.1", 64])             # a layer narrower than the dim has no value
    pd.testing.assert_frame_equal(fig, sweep_figure_data(table))  # from memory (SweepResult) the same


@pytest.mark.parametrize("case,message", [
    ("missing", r"nope\.csv: no sweep table here \(write one with `lee sweep --table FILE`\)"),
    ("empty-file", r"not a sweep table from `lee sweep --table`: not a readable CSV"),
    ("binary", r"not a sweep table from `lee sweep --table`: "),
    ("other-csv", r"missing column\(s\) layer, dim, delta_auc; expected layer, dim, delta_auc \(got user_id, gmv\)"),
    ("header-only", r"it holds no rows"),
    ("text-delta", r"column delta_auc must hold numbers; data row 1 holds 'high'"),
    ("blank-delta", r"column delta_auc must hold numbers; data row 3 holds an empty value"),
    ("fractional-dim", r"column dim must hold positive whole numbers"),
    ("duplicate", r"layer 'mix\.cross\.1' at dim 16 appears more than once"),
])
def test_anything_else_is_an_input_error_naming_the_file(tmp_path, case, message):
    path = tmp_path / ("nope.csv" if case == "missing" else "sweep.csv")
    table = _sweep_table()
    if case == "empty-file":
        path.write_bytes(b"")
    elif case == "binary":
        path.write_bytes(b"PAR1\x00\x15\x04\xff\xfe" * 50)
    elif case == "other-csv":
        pd.DataFrame({"user_id": [1, 2], "gmv": [0.5, 1.0]}).to_csv(path, index=False)
    elif case == "header-only":
        table.iloc[:0].to_csv(path, index=False)
    elif case == "text-delta":
        table.astype({"delta_auc": object}).assign(delta_auc=["high"] + table["delta_auc"].tolist()[1:]).to_csv(
            path, index=False)
    elif case == "blank-delta":
        table.assign(delta_auc=table["delta_auc"].where(table.index != 2)).to_csv(path, index=False)
    elif case == "fractional-dim":
        table.assign(dim=table["dim"] + 0.5).to_csv(path, index=False)
    elif case == "duplicate":
        pd.concat([table, table.iloc[[2]]]).to_csv(path, index=False)
    with pytest.raises(InputError, match=message) as err:
        read_sweep_figure(path)
    assert str(err.value).startswith(str(path))
    assert "\n" not in str(err.value)
