"""Turning a dataset's declared fields into the integer codes a proxy model embeds.

One rule per field type, all stated in :class:`EncodingConfig` and recorded with every run:

* **categorical** — codes in sorted order of the values seen in the downstream events; values
  seen fewer than ``min_count`` times share one "rare" code, a missing value has its own code; a
  field with more than ``max_cardinality`` distinct values is hashed (a fixed, seedless hash)
  into ``hash_buckets`` codes;
* **numeric** — ``numeric_buckets`` quantile buckets (ties merge buckets), missing values in a
  bucket of their own;
* **multi** — up to ``multi_slots`` values per row (the first ones listed), each coded as a
  categorical; the proxy averages their embeddings (code 0 is padding);
* **derived** — hour of day (24 codes) or day of week (7) of the event time.

The two ids (``user``, ``item``) are coded by row in the dataset's user and item lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from lee.config import ConfigModel
from lee.data.spec import Derived, FieldSpec, FieldType

RARE = "__rare__"


class EncodingConfig(ConfigModel):
    """How declared fields become codes (see the module docstring)."""

    config_name: ClassVar[str] = "field encoding"

    min_count: int = Field(2, ge=1)               # values seen less often share one code
    max_cardinality: int = Field(100_000, ge=2)   # above this, a categorical field is hashed
    hash_buckets: int = Field(65_536, ge=2)
    numeric_buckets: int = Field(10, ge=2)
    multi_slots: int = Field(8, ge=1)


@dataclass(frozen=True)
class EncodedField:
    """Codes of one field for the selected events: ``codes`` (N,) or (N, slots) for multi."""

    name: str
    codes: np.ndarray
    cardinality: int
    note: str

    @property
    def slots(self) -> int:
        return 1 if self.codes.ndim == 1 else int(self.codes.shape[1])


def _categorical(values: np.ndarray, cfg: EncodingConfig, *, pad: bool = False) -> tuple[np.ndarray, int, str]:
    """Sorted-value codes with rare pooling and missing as its own code (offset by 1 when ``pad``)."""
    s = pd.Series(values, dtype=object if values.dtype.kind == "O" else values.dtype)
    missing = s.isna().to_numpy()
    n_distinct = int(s.nunique(dropna=True))
    offset = 1 if pad else 0
    if n_distinct > cfg.max_cardinality:
        hashed = pd.util.hash_array(s.astype(str).to_numpy(object), categorize=True)
        codes = (hashed % np.uint64(cfg.hash_buckets)).astype(np.int64) + offset
        return codes, cfg.hash_buckets + offset, f"{n_distinct:,} values hashed into {cfg.hash_buckets:,} buckets"
    notes = []
    if cfg.min_count > 1 and n_distinct:
        counts = s.value_counts(dropna=True)
        rare = counts.index[counts.to_numpy() < cfg.min_count]
        if len(rare):
            s = s.astype(object).where(~s.isin(rare), RARE)
            notes.append(f"{len(rare):,} rare value(s) pooled")
    codes, uniques = pd.factorize(s, sort=True)
    codes = codes.astype(np.int64)
    card = max(len(uniques), 1)
    if missing.any():
        codes[missing] = card
        card += 1
        notes.append(f"{int(missing.sum()):,} missing")
    return codes + offset, card + offset, ", ".join(notes) or f"{n_distinct:,} values"


def encode_field(f: FieldSpec, values: np.ndarray | pd.Series, ts: np.ndarray, cfg: EncodingConfig) -> EncodedField:
    """Codes of field ``f`` given its per-event ``values`` (ignored for derived fields) and event times."""
    if f.derived == Derived.HOUR_OF_DAY:
        return EncodedField(f.name, (ts // 3600) % 24, 24, "hour of day (UTC)")
    if f.derived == Derived.DAY_OF_WEEK:
        return EncodedField(f.name, ((ts // 86_400) + 3) % 7, 7, "day of week (UTC, Monday = 0)")
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if f.type == FieldType.NUMERIC:
        x = pd.to_numeric(pd.Series(arr), errors="coerce")
        codes = pd.qcut(x, cfg.numeric_buckets, labels=False, duplicates="drop")
        k = int(np.nanmax(codes.to_numpy(np.float64))) + 1 if codes.notna().any() else 0
        out = codes.to_numpy(np.float64)
        missing = np.isnan(out)
        out = np.where(missing, k, out).astype(np.int64)
        card = k + (1 if missing.any() else 0)
        return EncodedField(f.name, out, max(card, 1), f"{k} quantile bucket(s)"
                            + (f", {int(missing.sum()):,} missing" if missing.any() else ""))
    if f.type == FieldType.MULTI:
        lists = pd.Series(arr).astype(object).where(pd.notna(pd.Series(arr)), "")
        parts = lists.astype(str).str.split(f.separator, regex=False)
        flat = parts.explode()
        flat = flat[flat.astype(str) != ""]
        codes, card, note = _categorical(flat.to_numpy(object), cfg, pad=True)
        slots = np.zeros((len(arr), cfg.multi_slots), dtype=np.int64)      # 0 = padding
        pos = flat.groupby(level=0).cumcount().to_numpy()
        keep = pos < cfg.multi_slots
        slots[flat.index.to_numpy()[keep], pos[keep]] = codes[keep]
        return EncodedField(f.name, slots, card, f"multi-valued ({note}), up to {cfg.multi_slots} per row")
    codes, card, note = _categorical(arr, cfg)
    return EncodedField(f.name, codes, card, note)
