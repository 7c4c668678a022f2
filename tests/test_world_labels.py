"""World.user_labels / planted_groups / default_k: the one home of labels, truth and k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from lee.errors import InputError
from lee.world.model import World


def test_planted_world(tiny_world):
    users = tiny_world.users
    labels = tiny_world.user_labels()
    truth = tiny_world.planted_groups()
    assert truth is not None
    assert labels.index.tolist() == users["user_id"].tolist() == truth.index.tolist()
    assert labels.map(type).eq(str).all()
    assert labels.tolist() == users["label"].astype(str).tolist()
    assert truth.tolist() == users["group"].tolist()
    # a planted user's label is the name of its group: one label per group, so the two agree exactly
    assert adjusted_rand_score(truth.to_numpy(), labels.to_numpy()) == 1.0
    assert tiny_world.default_k() == users["label"].nunique() == users["group"].nunique()
    assert tiny_world.default_k() == tiny_world.meta["config"]["n_groups"]


def _world(users: pd.DataFrame) -> World:
    empty = pd.DataFrame({"ts": np.array([0], np.int64)})
    return World(users=users, items=pd.DataFrame(), events=empty)


def test_real_data_has_labels_but_no_truth():
    labels = pd.Categorical(["Drama", "Comedy", "Drama", "(none)"])
    world = _world(pd.DataFrame({"user_id": [7, 3, 9, 4], "label": labels, "activity_level": [0, 1, 2, 0]}))
    assert world.planted_groups() is None
    assert world.user_labels().to_dict() == {7: "Drama", 3: "Comedy", 9: "Drama", 4: "(none)"}
    assert world.default_k() == 3


def test_missing_label_column_is_named():
    world = _world(pd.DataFrame({"user_id": [1, 2], "activity_level": [0, 1]}))
    with pytest.raises(InputError, match=r"the users table has no label column; a world's users need "
                                         r"user_id, label, activity_level"):
        world.user_labels()
    with pytest.raises(InputError, match="no label column"):
        world.default_k()
