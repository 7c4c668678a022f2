"""Do a representation's clusters line up with a label, more than clusters of random vectors do?

K-means clusters of a snapshot table are scored against a label column of the dataset's users or
items table, three ways, and the same scores are computed for K-means clusters of ``N`` random
draws of the same shape (same ids, per-dimension mean and std: :func:`lee.snapshot.random_like.
random_like_vectors`), which is what "no structure" looks like at this size, k and label mix:

* **purity** — the share of labelled ids that carry their cluster's most common label
  (size-weighted mean of each cluster's top-label share). 1 when every cluster holds one label;
  never below the commonest label's overall share.
* **NMI** — normalised mutual information between cluster and label
  (``sklearn.metrics.normalized_mutual_info_score``, arithmetic normalisation): 0 when the
  clusters say nothing about the label, 1 when they determine it.
* **label-mix divergence** — how far each cluster's mean label mix is from the population's:
  size-weighted mean over clusters of the Jensen–Shannon divergence (natural log, so at most
  ln 2) between the cluster's mean mix and the mean mix of all ids. Unlike purity and NMI it uses
  every id's whole mix, not only its top label, so a user who rates a dozen genres counts for all
  of them.

Labels and mixes (:func:`label_mix`): for a column of the entity's own side table (users for UR /
CR_user, items for IR / CR_item), an id's mix puts equal weight on each of its values (one value,
or the values of a multi-valued field split on its declared separator). For a column of the
*other* side table (e.g. the items' ``genres`` for a user table), an id's mix is the average of the
mixes of the other ids in its positive events (label = 1) of the chosen part — by default the
events a representation is trained on: the upstream part when the dataset declares a split, else
every event; ids without a positive event there have no mix. An id's single label is the value whose share in
its mix most exceeds its share in the population's mean mix (for a single-valued own column, the
value itself), the rule that keeps a common value (Drama) from labelling everyone.

The empirical p-value of a measure is (1 + number of draws scoring at least as high) / (N + 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import normalized_mutual_info_score

from analysis.clusters import kmeans, resolve_backend
from lee.data.dataset import Dataset
from lee.data.spec import FieldType, SplitKind
from lee.errors import InputError
from lee.results import SavedResult, register
from lee.snapshot import Snapshot, TableKind
from lee.snapshot.random_like import random_like_vectors

MEASURES = ("purity", "nmi", "label_mix_divergence")
MEANINGS = {
    "purity": "share of labelled ids carrying their cluster's most common label (size-weighted top-label share)",
    "nmi": "normalised mutual information between cluster and label (scikit-learn, arithmetic normalisation)",
    "label_mix_divergence": ("size-weighted mean Jensen-Shannon divergence (natural log) between each cluster's "
                             "mean label mix and the population's mean mix"),
}
LABEL_RULE = "the value whose share in the id's mix most exceeds its share in the population's mean mix"


# --------------------------------------------------------------------------- per-id label mixes


def _separator(ds: Dataset, table: str, column: str) -> str | None:
    """The declared separator when ``column`` of ``table`` is a multi-valued field, else None."""
    for f in ds.spec.fields:
        if f.table == table and f.source == column and f.type == FieldType.MULTI:
            return f.separator
    return None


def _value_mix(ids: np.ndarray, values: pd.Series, sep: str | None) -> pd.DataFrame:
    """Long frame (id, value, weight): each id's values with equal weights summing to 1."""
    text = values.astype("string")
    frame = pd.DataFrame({"id": ids, "value": text.to_numpy(dtype=object)})
    frame = frame[frame["value"].notna()]
    if sep is not None:
        frame["value"] = frame["value"].str.split(sep, regex=False)
        frame = frame.explode("value")
    frame = frame[frame["value"].astype(str).str.len() > 0]
    frame["weight"] = 1.0 / frame.groupby("id", sort=False)["value"].transform("size")
    return frame.reset_index(drop=True)


def _wide(long: pd.DataFrame) -> pd.DataFrame:
    mix = long.pivot_table(index="id", columns="value", values="weight", aggfunc="sum", fill_value=0.0)
    mix = mix.div(mix.sum(axis=1), axis=0)
    mix.columns = mix.columns.astype(str)
    return mix


@dataclass(frozen=True)
class LabelMix:
    """Each id's label distribution (``mix``: ids × values, rows sum to 1) and how it was made."""

    column: str
    table: str
    mix: pd.DataFrame
    source: str


def default_part(ds: Dataset) -> str:
    """The events labels are derived from by default: ``upstream`` when the dataset has a split, else ``all``."""
    return "all" if ds.spec.split.kind == SplitKind.NONE else "upstream"


def label_mix(ds: Dataset, entity: str, column: str, *, part: str | None = None) -> LabelMix:
    """The per-id distribution of ``column`` for ``entity`` ids (see the module docstring).

    ``column`` is looked up in the entity's own side table first, then in the other one; a column
    in neither is an error naming both tables' columns. ``part`` (upstream, downstream or all;
    default :func:`default_part`) picks the events a mix over the other table is made from.
    """
    part = part or default_part(ds)
    if entity not in ("user", "item"):
        raise InputError(f"entity must be 'user' or 'item'; got {entity!r}")
    other = "item" if entity == "user" else "user"
    own_frame, other_frame = ds.attributes(entity), ds.attributes(other)
    own_id, other_id = (ds.user_col, ds.item_col) if entity == "user" else (ds.item_col, ds.user_col)
    where = ds.path or "dataset"
    if own_frame is not None and column in own_frame.columns and column != own_id:
        sep = _separator(ds, f"{entity}s", column)
        long = _value_mix(own_frame[own_id].to_numpy(), own_frame[column], sep)
        split = f", split on {sep!r}" if sep else ""
        return LabelMix(column, f"{entity}s", _wide(long),
                        f"the {entity}s table's column {column}{split}, equal weight per value")
    if other_frame is not None and column in other_frame.columns and column != other_id:
        sep = _separator(ds, f"{other}s", column)
        per_other = _value_mix(other_frame[other_id].to_numpy(), other_frame[column], sep)
        r = ds.spec.roles
        ev = ds.events.loc[ds.part_mask(part)]
        pos = ev.loc[ev[r.label].to_numpy() == 1, [own_id, other_id]]
        if pos.empty:
            raise InputError(f"{where}: no positive events ({r.label} = 1) in the {part} part to derive each "
                             f"{entity}'s mix of the {other}s' {column}")
        pos = pos.rename(columns={own_id: "owner", other_id: "id"})
        long = pos.merge(per_other, on="id", how="inner")
        if long.empty:
            raise InputError(f"{where}: none of the positive events' {other}s has a value in the {other}s table's "
                             f"column {column}")
        long = long.rename(columns={"id": "via"}).rename(columns={"owner": "id"})
        split = f" (values split on {sep!r})" if sep else ""
        return LabelMix(column, f"{other}s", _wide(long[["id", "value", "weight"]]),
                        f"mean over each {entity}'s positive events ({r.label} = 1, {part} events) of the {other}s' "
                        f"column {column}{split}; {entity}s without a positive event have no mix")
    cols = {name: ([c for c in frame.columns if c not in (ds.user_col, ds.item_col)] if frame is not None else None)
            for name, frame in ((f"{entity}s", own_frame), (f"{other}s", other_frame))}
    listing = "; ".join(f"{name}: {', '.join(map(str, c)) or 'no columns'}" if c is not None
                        else f"{name}: no such table" for name, c in cols.items())
    raise InputError(f"{where}: no column {column!r} in the users or items table to label {entity}s with ({listing})")


def top_labels(mix: pd.DataFrame) -> pd.Series:
    """Each id's label: the value whose share most exceeds the population mean mix (ties: first column)."""
    excess = mix.to_numpy() - mix.to_numpy().mean(axis=0, keepdims=True)
    return pd.Series(np.asarray(mix.columns, dtype=object)[excess.argmax(axis=1)], index=mix.index, name="label")


# --------------------------------------------------------------------------- the three measures


def purity(assignment: np.ndarray, labels: np.ndarray) -> float:
    """Share of ids carrying their cluster's most common label."""
    tab = pd.crosstab(np.asarray(assignment), np.asarray(labels, dtype=object))
    return float(tab.max(axis=1).sum() / tab.to_numpy().sum())


def mix_divergence(assignment: np.ndarray, mix: np.ndarray) -> float:
    """Size-weighted mean JS divergence (natural log) of each cluster's mean mix from the overall mean mix."""
    overall = mix.mean(axis=0)
    total = 0.0
    for c in np.unique(assignment):
        rows = assignment == c
        total += rows.sum() * float(jensenshannon(mix[rows].mean(axis=0), overall)) ** 2
    return total / len(assignment)


def label_measures(assignment: np.ndarray, ids: np.ndarray, labels: pd.Series, mix: pd.DataFrame) -> dict[str, float]:
    """The three measures over the ids that have a mix (and so a label); others are left out."""
    has = pd.Index(ids).isin(mix.index) & pd.Index(ids).isin(labels.index)
    lab = labels.reindex(ids[has]).to_numpy(dtype=object).astype(str)
    m = mix.reindex(ids[has]).to_numpy(np.float64)
    cl = np.asarray(assignment)[has]
    return {"purity": purity(cl, lab), "nmi": float(normalized_mutual_info_score(lab, cl)),
            "label_mix_divergence": mix_divergence(cl, m)}


# --------------------------------------------------------------------------- against random draws


@register("cluster-labels")
@dataclass
class ClusterLabelResult(SavedResult):
    """Purity, NMI and label-mix divergence of a snapshot's clusters and of ``draws`` random draws."""

    snapshot: str
    table: str
    label: str
    label_table: str
    label_source: str
    k: int
    backend: str
    seed: int
    n_ids: int
    n_labelled: int
    draws: int
    measures: pd.DataFrame          # variant ('snapshot' | 'random draw i'), purity, nmi, label_mix_divergence
    label_counts: pd.DataFrame = field(default_factory=pd.DataFrame)   # label, ids

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"measures": self.measures, "label_counts": self.label_counts}

    def comparison(self) -> pd.DataFrame:
        """One row per measure: the snapshot's value, the draws' mean, sd and max, the empirical p-value."""
        obs = self.measures[self.measures["variant"] == "snapshot"].iloc[0]
        rnd = self.measures[self.measures["variant"] != "snapshot"]
        rows = []
        for m in MEASURES:
            r = rnd[m].to_numpy(np.float64)
            rows.append({"measure": m, "snapshot": float(obs[m]),
                         "random_mean": float(r.mean()) if r.size else float("nan"),
                         "random_sd": float(r.std(ddof=1)) if r.size > 1 else float("nan"),
                         "random_max": float(r.max()) if r.size else float("nan"),
                         "p_value": float((1 + (r >= obs[m]).sum()) / (r.size + 1)),
                         "above_every_draw": bool(r.size and obs[m] > r.max()), "meaning": MEANINGS[m]})
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "table": self.table, "label": self.label, "label_table": self.label_table,
                "label_source": self.label_source, "label_rule": LABEL_RULE, "k": self.k, "backend": self.backend,
                "seed": self.seed, "n_ids": self.n_ids, "n_labelled": self.n_labelled,
                "random_draws": self.draws,
                "random_method": "same ids and shape, per-dimension mean and std of the table (random-like)",
                "p_value_method": "(1 + draws scoring at least as high) / (draws + 1)",
                "measures": self.comparison().to_dict(orient="records")}


def cluster_labels_against_random(vectors: np.ndarray, ids: np.ndarray, mix: LabelMix, *, k: int, draws: int = 20,
                                  seed: int = 0, backend: str = "auto", n_init: int = 10,
                                  assignment: np.ndarray | None = None, snapshot: str = "",
                                  table: str = "") -> ClusterLabelResult:
    """The three measures for K-means clusters of ``vectors`` and of ``draws`` random-like draws.

    Every fit uses the same k, backend, seed and ``n_init``; draw ``i`` comes from a generator
    seeded with ``(seed, i)``. ``assignment`` reuses a clustering of ``vectors`` already made with
    those settings.
    """
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise InputError(f"the number of random draws must be a positive integer; got {draws!r}")
    labels = top_labels(mix.mix)
    present = pd.Index(ids).isin(labels.index)
    if present.sum() < 2:
        raise InputError(f"{snapshot or 'table'}: {int(present.sum())} of its {len(ids)} ids have a {mix.column} "
                         f"label ({mix.source}); at least 2 are needed (are the snapshot and the dataset from the "
                         "same id space?)")
    backend = resolve_backend(backend)
    if assignment is None:
        assignment = kmeans(vectors, k, backend=backend, seed=seed, n_init=n_init).labels
    rows = [{"variant": "snapshot", **label_measures(assignment, ids, labels, mix.mix)}]
    for i in range(draws):
        noise = random_like_vectors(vectors, np.random.default_rng([seed, i]))
        fit = kmeans(noise, k, backend=backend, seed=seed, n_init=n_init)
        rows.append({"variant": f"random draw {i}", **label_measures(fit.labels, ids, labels, mix.mix)})
    counts = labels.reindex(ids[present]).value_counts().rename_axis("label").reset_index(name="ids")
    return ClusterLabelResult(
        snapshot=snapshot, table=table, label=mix.column, label_table=mix.table, label_source=mix.source, k=int(k),
        backend=backend, seed=int(seed), n_ids=int(len(ids)), n_labelled=int(present.sum()),
        draws=int(draws), measures=pd.DataFrame(rows), label_counts=counts)


def snapshot_cluster_labels(snapshot: Snapshot, kind: TableKind | str, ds: Dataset, column: str, *,
                            k: int | None = None, draws: int = 20, seed: int = 0, backend: str = "auto",
                            part: str | None = None, n_init: int = 10,
                            assignment: np.ndarray | None = None) -> ClusterLabelResult:
    """:func:`cluster_labels_against_random` for one table of ``snapshot`` labelled by ``column`` of ``ds``.

    ``k`` defaults to the number of distinct labels among the table's ids.
    """
    kind = TableKind.parse(kind, path=snapshot.path)
    table = snapshot.load(kind)
    mix = label_mix(ds, kind.entity, column, part=part)
    if k is None:
        k = int(top_labels(mix.mix).reindex(table.ids).dropna().nunique())
    return cluster_labels_against_random(table.vectors, table.ids, mix, k=k, draws=draws, seed=seed,
                                         backend=backend, n_init=n_init, assignment=assignment,
                                         snapshot=str(snapshot.path), table=kind.value)
