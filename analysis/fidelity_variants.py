"""The variants ``lee fidelity`` ranks: yardsticks of graded quality plus close calls, on any dataset.

A fidelity measurement needs representations whose order is partly known (so a reader can see which
protocol got it wrong) and partly close (so a ranking is tested where it is hard). Families:

* ``planted`` — on a planted world, every planted variant the generator offers
  (:data:`lee.world.planted.PLANTED_VARIANTS`: the oracle, its noisy and low-rank versions, random,
  id-shuffled), written once at the end of the stream;
* ``upstream`` — snapshots of the upstream model at successive times (``upstream@<time>``), from one
  training run; early ones have seen little, so neighbours in time are close calls;
* ``layer`` — the CR of each layer of the upstream model's downstream branch (``cr.<layer>``, the
  final CR moving average of that layer, reduced by PCA to ``layer_dim`` as the layer sweep does);
* ``rank`` — projections of a reference snapshot's tables onto their top ``k`` principal directions;
* ``noise`` — the reference plus Gaussian noise at graded levels (std a multiple of each column's std);
* ``null`` — no information: the planted ``random`` (and ``id_shuffled``), or a random snapshot
  shaped like the reference on other data (:func:`lee.snapshot.random_like.write_random_like`).

The reference is the planted oracle on a planted world, else the latest upstream snapshot. Rank and
noise variants the planted generator already writes (names ``rank_<k>``, levels in its
``NOISE_LEVELS``) are used as they are; the missing ones are derived here and named
``<reference>.rank<k>`` and ``<reference>.noise<level>``.

**No leakage.** The upstream model never trains on the test windows' events: on data without an
upstream/downstream split (a planted world, whose ad events are both upstream and downstream
events) it trains only on events before the first test window; with a split it trains on the
upstream events only, as ``lee upstream train --data`` does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np

from lee.data.dataset import Dataset
from lee.data.spec import SplitKind
from lee.errors import InputError
from lee.evaluator.sweep import reduce_tables
from lee.features import encode_world
from lee.snapshot import EmbeddingTable, Snapshot, TableKind, write_snapshot
from lee.snapshot.random_like import write_random_like
from lee.timeutil import time_dirname
from lee.upstream.from_dataset import default_cadence_minutes, upstream_world
from lee.upstream.model import UpstreamConfig
from lee.upstream.train import TrainConfig, train_upstream

FAMILIES = ("planted", "upstream", "layer", "rank", "noise", "null")
DERIVED_RANKS = (2, 4, 8)
DERIVED_NOISE = (0.25, 0.5, 1.0, 2.0)   # noise std as a multiple of each column's std
_RANK_NAME = re.compile(r"rank_(\d+)")


@dataclass(frozen=True)
class FidelityVariant:
    """One representation to rank: a display name, its family and the snapshot it is read from."""

    name: str
    family: str
    path: Path
    note: str = ""

    def open(self) -> Snapshot:
        return Snapshot.open(self.path)


@dataclass(frozen=True)
class CatalogueConfig:
    """What the catalogue writes (defaults: the measurement's default variant set)."""

    upstream_times: int = 4                   # upstream snapshots at successive times (the latest included)
    layers: tuple[str, ...] | None = None     # None: the CR branch's layers but the snapshot's own CR layer
    layer_dim: int = 32
    ranks: tuple[int, ...] = DERIVED_RANKS
    noise: tuple[float, ...] = DERIVED_NOISE
    planted_dim: int = 32
    upstream_epochs: int | None = None         # passes per snapshot interval (None: TrainConfig's default)
    seed: int = 0


@dataclass
class Catalogue:
    """The variants written, and how the upstream model that wrote some of them was trained."""

    variants: list[FidelityVariant]
    reference: str
    upstream: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- selection


class Selection:
    """``--variants``: family names (``planted``, ``upstream``, ``layer``, ``rank``, ``noise``,
    ``null``) or shell patterns over variant names (``upstream@*``, ``oracle*``); none: everything."""

    def __init__(self, patterns: Sequence[str] | None) -> None:
        self.patterns = tuple(patterns or ())
        self.used: set[str] = set()

    def wants(self, name: str, family: str) -> bool:
        if not self.patterns:
            return True
        hit = [p for p in self.patterns if p == family or fnmatch(name, p)]
        self.used.update(hit)
        return bool(hit)

    def may_want(self, family: str, probes: Sequence[str]) -> bool:
        """Whether any pattern could select a variant of ``family`` (names like ``probes``)."""
        if not self.patterns:
            return True
        prefix = {"upstream": "upstream@", "layer": "cr."}.get(family, "\0")
        return any(p == family or p.startswith(prefix) or any(fnmatch(n, p) for n in probes)
                   for p in self.patterns)

    def check(self, available: Sequence[str]) -> None:
        unused = [p for p in self.patterns if p not in self.used]
        if unused:
            raise InputError(f"--variants: {', '.join(map(repr, unused))} matched no variant; the variants are "
                             f"{', '.join(available)} (families: {', '.join(FAMILIES)})")


# ----------------------------------------------------------------------------- derived tables


def rank_k(vectors: np.ndarray, k: int) -> np.ndarray:
    """``vectors`` projected onto their top ``k`` principal directions (mean kept)."""
    x = vectors.astype(np.float64)
    mean = x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    top = vt[:k]
    return (mean + (x - mean) @ top.T @ top).astype(np.float32)


def with_noise(vectors: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """``vectors`` plus Gaussian noise whose std is ``level`` times each column's std."""
    x = vectors.astype(np.float64)
    return (x + level * x.std(0, keepdims=True) * rng.standard_normal(x.shape)).astype(np.float32)


def _derive(ref: Snapshot, root: Path, name: str, transform: Callable[[np.ndarray], np.ndarray], note: str) -> Path:
    tables = {}
    for kind in ref.kinds:
        t = ref.load(kind)
        tables[kind] = EmbeddingTable(ids=t.ids, vectors=transform(t.vectors), updated_at=t.updated_at)
    return write_snapshot(root, name, ref.event_time, tables, source_layer=f"derived:{note}", overwrite=True,
                          extra={"fidelity": {"reference": str(ref.path), "derived": note}})


# ----------------------------------------------------------------------------- the catalogue


def _planted_family(name: str, noise: Callable[[str], float | None], rank: Callable[[str], int | None]) -> str:
    if noise(name) is not None:
        return "noise"
    if rank(name) is not None:
        return "rank"
    if name in ("random", "id_shuffled"):
        return "null"
    return "planted"


def planted_names() -> tuple[list[str], Callable[[str], float | None], Callable[[str], int | None]]:
    """The planted variants this world module offers (graded rank-k and noise levels included when it has
    them, aliases of the same level dropped), and its name -> noise level / rank readers."""
    from lee.world import planted

    levels: dict[str, float] = dict(getattr(planted, "NOISE_LEVELS", {}))
    collapsed = getattr(planted, "COLLAPSED_RANK", None)

    def noise(name: str) -> float | None:
        reader = getattr(planted, "variant_noise", None)
        return reader(name) if reader is not None else levels.get(name)

    def rank(name: str) -> int | None:
        reader = getattr(planted, "variant_rank", None)
        if reader is not None:
            return reader(name)
        m = _RANK_NAME.fullmatch(name)
        return int(m.group(1)) if m else (collapsed if name == "rank_collapsed" else None)

    offered = list(getattr(planted, "ALL_VARIANTS", planted.PLANTED_VARIANTS))
    names: list[str] = []
    seen: set[tuple[str, float]] = set()
    # graded names first, so rank_collapsed / noise_low / noise_high give way to rank_2 / noise_0.5 / noise_2
    for n in sorted(offered, key=lambda n: n in ("rank_collapsed", *levels)):
        key = ("rank", float(r)) if (r := rank(n)) is not None else ("noise", lv) if (lv := noise(n)) is not None \
            else (n, 0.0)
        if key not in seen:
            seen.add(key)
            names.append(n)
    return [n for n in offered if n in names], noise, rank


def _planted(ds: Dataset, root: Path, cfg: CatalogueConfig, sel: Selection,
             out: list[FidelityVariant]) -> dict[str, Any] | None:
    """Write the planted variants (a planted world only); what the generator offers, for derivation."""
    world = ds.world
    if world is None or getattr(world, "user_latent", None) is None:
        return None
    from lee.world import planted

    offered, noise, rank = planted_names()
    names = [n for n in offered if n == "oracle" or sel.wants(n, _planted_family(n, noise, rank))]
    paths = planted.write_planted_variants(world, root, dim=cfg.planted_dim, n_snapshots=1, variants=names,
                                           seed=cfg.seed, overwrite=True)
    for n in names:
        if n != "oracle" or sel.wants(n, "planted"):
            out.append(FidelityVariant(n, _planted_family(n, noise, rank), paths[n][-1], "planted"))
    return {"oracle": paths["oracle"][-1], "ranks": {r for n in offered if (r := rank(n)) is not None},
            "noise": {lv for n in offered if (lv := noise(n)) is not None}}


def _upstream(ds: Dataset, root: Path, cfg: CatalogueConfig, sel: Selection, test_start: int,
              out: list[FidelityVariant], *, device: str, progress: bool) -> dict[str, Any]:
    """Train the upstream model once; write its snapshots and its branch layers' CRs."""
    world, info = upstream_world(ds)
    ts = world.events["ts"].to_numpy()
    cadence = default_cadence_minutes(info["span_seconds"])
    holdout = 0.0
    if ds.spec.split.kind == SplitKind.NONE:
        # no split: the downstream events are upstream events too; never train on the test windows' times
        holdout = float((ts >= test_start).mean())
        if holdout >= 1.0:
            raise InputError("every event lies in the test windows: the upstream model has nothing to train on")
    base = TrainConfig()
    tcfg = TrainConfig(snapshot_every_minutes=cadence, holdout_fraction=min(holdout, 0.95),
                       tau_seconds=2.0 * cadence * 60.0, seed=cfg.seed,
                       epochs_per_interval=cfg.upstream_epochs or base.epochs_per_interval)
    mcfg = UpstreamConfig()
    branch = mcfg.cr_layer.split(".")[0]
    layers = list(cfg.layers) if cfg.layers is not None else [
        n for n in mcfg.layer_names() if n.startswith(branch + ".") and n != mcfg.cr_layer]
    layers = [n for n in layers if sel.wants(f"cr.{n}", "layer")]
    res = train_upstream(encode_world(world), root, model_cfg=mcfg, train_cfg=tcfg, device=device,
                         progress=progress, tap_layers=layers)
    if not res.snapshots:
        raise InputError("the upstream model wrote no snapshot (no training interval before the test windows)")
    k = max(1, min(cfg.upstream_times, len(res.snapshots)))
    picks = sorted({int(round(x)) for x in np.linspace(0, len(res.snapshots) - 1, k)})
    for j in picks:
        snap = Snapshot.open(res.snapshots[j])
        name = f"upstream@{time_dirname(snap.event_time)}"
        if sel.wants(name, "upstream"):
            out.append(FidelityVariant(name, "upstream", snap.path,
                                       f"upstream snapshot {j + 1} of {len(res.snapshots)}"))
    latest = Snapshot.open(res.snapshots[-1])
    for layer in layers:
        user, item = res.layer_cr[layer]
        dim = min(cfg.layer_dim, user.dim)
        u, i = reduce_tables(user, item, dim)
        path = write_snapshot(root, f"cr.{layer}", latest.event_time, {TableKind.CR_USER: u, TableKind.CR_ITEM: i},
                              source_layer=layer, overwrite=True,
                              extra={"fidelity": {"layer_width": user.dim, "pca_dim": dim}})
        out.append(FidelityVariant(f"cr.{layer}", "layer", path,
                                   f"final CR average of {layer} (width {user.dim}), PCA to {dim}"))
    return {"snapshots": len(res.snapshots), "cadence_minutes": cadence, "holdout_fraction": tcfg.holdout_fraction,
            "epochs_per_interval": tcfg.epochs_per_interval, "tau_seconds": tcfg.tau_seconds,
            "holdout_auc": res.holdout_auc_ad, "train_events": res.train_events, "seconds": res.seconds,
            "layers": layers, "cr_layer": mcfg.cr_layer, "latest": str(latest.path), "split": info["split"]}


def build_catalogue(ds: Dataset, root: str | Path, *, test_start: int, cfg: CatalogueConfig | None = None,
                    select: Sequence[str] | None = None, device: str = "cpu", progress: bool = False,
                    log: Callable[[str], Any] = print) -> Catalogue:
    """Write every selected variant under ``root`` and return them (module docstring).

    ``test_start``: the event time of the first test window (the upstream model stays before it on
    data without a split).
    """
    cfg = cfg or CatalogueConfig()
    root = Path(root)
    sel = Selection(select)
    out: list[FidelityVariant] = []
    notes: list[str] = []
    planted_info = _planted(ds, root, cfg, sel, out)
    derive = sel.may_want("rank", ["x.rank2"]) or sel.may_want("noise", ["x.noise1"]) or \
        sel.may_want("null", ["random"])
    upstream: dict[str, Any] = {}
    probes = ["upstream@20260101T000000Z"] + [f"cr.{n}" for n in UpstreamConfig().layer_names()]
    need_reference = planted_info is None and derive
    if sel.may_want("upstream", probes) or sel.may_want("layer", probes) or need_reference:
        log("training the upstream model (snapshots at successive times, CR of every layer)")
        upstream = _upstream(ds, root, cfg, sel, test_start, out, device=device, progress=progress)
    if planted_info is not None:
        ref, reference = Snapshot.open(planted_info["oracle"]), "oracle"
        have_ranks, have_noise = planted_info["ranks"], planted_info["noise"]
    elif upstream:
        ref, reference = Snapshot.open(upstream["latest"]), "upstream"
        have_ranks, have_noise = set(), set()
        if sel.wants("random", "null"):
            path = write_random_like(ref, root, "random", seed=cfg.seed, overwrite=True)
            out.append(FidelityVariant("random", "null", path, "random, shaped like the latest upstream snapshot"))
    else:
        ref = None
    if ref is not None:
        dims = min(ref.info(k).dim for k in ref.kinds)
        rng = np.random.default_rng([cfg.seed, 15])
        for k in cfg.ranks:
            name = f"{reference}.rank{k}"
            if k in have_ranks or k >= dims or not sel.wants(name, "rank"):
                continue
            path = _derive(ref, root, name, functools.partial(rank_k, k=k), f"rank-{k} projection of {reference}")
            out.append(FidelityVariant(name, "rank", path, f"{reference}'s tables on their top {k} principal "
                                       "directions"))
        for level in cfg.noise:
            name = f"{reference}.noise{level:g}"
            if any(abs(level - h) < 1e-9 for h in have_noise) or not sel.wants(name, "noise"):
                continue
            path = _derive(ref, root, name, functools.partial(with_noise, level=level, rng=rng),
                           f"{reference} + noise {level:g} std")
            out.append(FidelityVariant(name, "noise", path, f"{reference} + Gaussian noise, std {level:g} x "
                                       "each column's"))
    sel.check([v.name for v in out])
    if len(out) < 3:
        raise InputError(f"a ranking needs at least 3 variants; the selection gave {len(out)} "
                         f"({', '.join(v.name for v in out) or 'none'})")
    if len(out) < 8:
        notes.append(f"only {len(out)} variants: with fewer than 8 a rank correlation says little")
    return Catalogue(variants=out, reference=reference if ref is not None else "", upstream=upstream, notes=notes)
