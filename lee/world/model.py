"""The in-memory world: users, items, the event stream and (for planted worlds) the true latents.

The same structure holds a generated world and an imported real one (whose latents are unknown),
so everything downstream reads one format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lee.errors import InputError

# Required columns. Planted worlds also carry segment attributes (home_ad_actions_10d,
# other_ad_actions_60d, ...); imported real data may not, and analyses that need them say so.
USER_COLUMNS = ("user_id", "label", "activity_level")
ITEM_COLUMNS = ("item_id", "domain", "category", "advertiser_id", "price")
EVENT_COLUMNS = ("ts", "user_id", "item_id", "domain", "scenario", "position", "click", "conversion", "gmv")
DOMAINS = ("content", "ad")  # the `domain` column holds 0 for content and 1 for ads


@dataclass
class World:
    """A world ready for the upstream model, the evaluator and the analyses.

    ``events`` is sorted by ``ts`` (int64 epoch seconds). ``user_latent[k]`` belongs to
    ``users.user_id[k]`` (likewise for items); both are ``None`` for real data.
    """

    users: pd.DataFrame
    items: pd.DataFrame
    events: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    user_latent: np.ndarray | None = None
    item_latent: np.ndarray | None = None

    def user_labels(self) -> pd.Series:
        """Each user's label as a string (the top behaviour of a planted world, the top genre of
        MovieLens), indexed by user id: what clusters are named and coloured by."""
        return pd.Series(self._label_column().astype(str).to_numpy(), index=self.users["user_id"].to_numpy())

    def planted_groups(self) -> pd.Series | None:
        """Each user's planted interest group, indexed by user id: the truth a clustering is scored
        against (ARI). ``None`` for a world without one (imported real data has no ``group`` column)."""
        if "group" not in self.users:
            return None
        return pd.Series(self.users["group"].to_numpy(), index=self.users["user_id"].to_numpy())

    def default_k(self) -> int:
        """The natural number of user clusters: the number of distinct user labels."""
        return int(self._label_column().nunique())

    def _label_column(self) -> pd.Series:
        if "label" not in self.users:
            raise InputError(f"the users table has no label column; a world's users need {', '.join(USER_COLUMNS)}")
        return self.users["label"]

    @property
    def start_ts(self) -> int:
        return int(self.events["ts"].iloc[0])

    @property
    def end_ts(self) -> int:
        return int(self.events["ts"].iloc[-1])

    def summary(self) -> dict[str, Any]:
        ev = self.events
        ads = ev["domain"].to_numpy() == 1
        return {
            "users": len(self.users),
            "items": len(self.items),
            "events": len(ev),
            "ad_events": int(ads.sum()),
            "ctr_content": float(ev["click"].to_numpy()[~ads].mean()) if (~ads).any() else float("nan"),
            "ctr_ad": float(ev["click"].to_numpy()[ads].mean()) if ads.any() else float("nan"),
            "conversions": int(ev["conversion"].sum()),
            "gmv": float(ev["gmv"].sum()),
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
        }
