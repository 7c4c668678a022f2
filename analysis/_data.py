"""What analyses read from a dataset: the interaction frame, id labels and planted truth.

Analyses take a :class:`~lee.data.dataset.Dataset` (a planted world converts to one losslessly);
these helpers give them plain frames and Series with the column names they compute on, so no
analysis depends on the planted world's fixed columns.
"""

from __future__ import annotations

import pandas as pd

from lee.data.dataset import Dataset
from lee.world.model import World


def as_dataset(data: Dataset | World) -> Dataset:
    """``data`` as a dataset (a world is described by its fixed columns; no copy of its tables)."""
    if isinstance(data, Dataset):
        return data
    from lee.data.worlds import dataset_from_world

    return dataset_from_world(data)


def interactions(ds: Dataset, *, part: str = "downstream") -> pd.DataFrame:
    """``user_id``, ``item_id``, ``click`` (the label role) of the ``part`` events, in time order."""
    r = ds.spec.roles
    ev = ds.events.loc[ds.part_mask(part)]
    return pd.DataFrame({"user_id": ev[r.user_id].to_numpy(), "item_id": ev[r.item_id].to_numpy(),
                         "click": ev[r.label].to_numpy()})


def id_labels(ds: Dataset, entity: str, column: str | None = "label") -> pd.Series | None:
    """A side-table column as text, indexed by id (None when there is no such table or column)."""
    side = ds.attributes(entity)
    id_col = ds.user_col if entity == "user" else ds.item_col
    if side is None or column is None or column not in side.columns:
        return None
    return pd.Series(side[column].astype(str).to_numpy(), index=side[id_col].to_numpy(), name=column)


def planted_truth(ds: Dataset) -> pd.Series | None:
    """The planted interest group per user (``group`` column of a planted world), else None."""
    side = ds.users
    if side is None or "group" not in side.columns:
        return None
    return pd.Series(side["group"].to_numpy(), index=side[ds.user_col].to_numpy(), name="group")
