"""Integer codes for categorical columns: the one encoding the proxy's fields and importers share."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lee.errors import InputError


def category_codes(values: pd.Series | np.ndarray, *, name: str = "downstream field") -> tuple[np.ndarray, int]:
    """Codes ``0..K-1`` of ``values`` in sorted order of the distinct values, and ``K`` (at least 1).

    Missing values are an error naming ``name``: a field must say what an absent value means.
    """
    codes, uniques = pd.factorize(pd.Series(values), sort=True)
    if (codes < 0).any():
        raise InputError(f"{name} holds missing values")
    return codes.astype(np.int64), max(len(uniques), 1)
