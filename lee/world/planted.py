"""Planted-quality snapshot variants written from a planted world's true latent factors.

They are yardsticks with a known order of quality, which the evaluator and the analyses must
recover:

- ``oracle``: the true latents (UR/IR, embedded isometrically; CRs a non-linear map of them);
- ``rank_K`` (any K >= 1, e.g. ``rank_2``, ``rank_4``, ``rank_8``): each table projected onto its
  own top-K principal directions. In a ``balanced`` world (``WorldConfig.click_model``) every
  latent direction carries the same weight, so ``oracle`` > ``rank_8`` > ``rank_4`` > ``rank_2``
  (``benchmarks/planted_yardsticks.py``); in a ``legacy`` world a low rank costs little.
  ``rank_collapsed`` is ``rank_2`` under the name the collapse analyses know;
- ``noise_X`` (any X > 0, e.g. ``noise_0.25``, ``noise_0.5``, ``noise_1``, ``noise_2``): the oracle
  plus Gaussian noise of X times each dimension's std, so quality falls with X; ``noise_low`` and
  ``noise_high`` are levels 0.5 and 2;
- ``random``: the oracle's per-dimension mean and std, no information;
- ``id_shuffled``: the oracle's vectors under permuted ids, no information about its ids.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np

from lee.errors import InputError
from lee.snapshot import EmbeddingTable, TableKind, write_snapshot
from lee.timeutil import parse_event_time
from lee.world.model import World

PLANTED_VARIANTS: tuple[str, ...] = ("oracle", "noise_low", "noise_high", "random", "id_shuffled", "rank_collapsed")
"""The default set: what the demo, the fixtures and ``lee world plant`` write without ``--variants``."""
RANK_VARIANTS: tuple[str, ...] = ("rank_2", "rank_4", "rank_8")
NOISE_VARIANTS: tuple[str, ...] = ("noise_0.25", "noise_0.5", "noise_1", "noise_2")
GRADED_VARIANTS: tuple[str, ...] = (*RANK_VARIANTS, *NOISE_VARIANTS)
"""Close yardsticks of graded quality: rank-k projections and four noise levels (for fidelity runs)."""
ALL_VARIANTS: tuple[str, ...] = (*PLANTED_VARIANTS, *GRADED_VARIANTS)
NOISE_LEVELS = {"noise_low": 0.5, "noise_high": 2.0}  # noise std as a multiple of the oracle's per-dim std
COLLAPSED_RANK = 2  # rank_collapsed == rank_2
DRIFT_PER_STEP = 0.02  # random-walk step between snapshots, in oracle std, scaled by activity
_RANK = re.compile(r"rank_([1-9][0-9]*)")
_NOISE = re.compile(r"noise_([0-9]+(?:\.[0-9]+)?)")


def variant_rank(name: str) -> int | None:
    """K of a rank-K variant (``rank_K``, ``rank_collapsed``), None for any other name."""
    if name == "rank_collapsed":
        return COLLAPSED_RANK
    m = _RANK.fullmatch(name)
    return int(m.group(1)) if m else None


def variant_noise(name: str) -> float | None:
    """The noise level of a noise variant (``noise_X``, ``noise_low``, ``noise_high``), None otherwise."""
    if name in NOISE_LEVELS:
        return NOISE_LEVELS[name]
    m = _NOISE.fullmatch(name)
    level = float(m.group(1)) if m else None
    return level if level is not None and level > 0 else None


def is_planted_variant(name: str) -> bool:
    """Whether ``name`` is a planted variant this module can write."""
    return name in ("oracle", "random", "id_shuffled") or variant_rank(name) is not None \
        or variant_noise(name) is not None


def check_variant_names(variants: Sequence[str]) -> None:
    """Refuse, before anything is written, names that are not planted variants."""
    unknown = sorted({v for v in variants if not is_planted_variant(v)})
    if unknown:
        raise InputError(f"unknown planted variant(s) {', '.join(unknown)}; choose from {', '.join(PLANTED_VARIANTS)}, "
                         f"rank_K (K >= 1, e.g. {', '.join(RANK_VARIANTS)}) or noise_X (X > 0, the noise std in "
                         f"units of the oracle's, e.g. {', '.join(NOISE_VARIANTS)})")


def _orthonormal(rng: np.random.Generator, d: int, dim: int) -> np.ndarray:
    """A (d, dim) matrix with orthonormal rows (d <= dim): embeds latents isometrically."""
    q, _ = np.linalg.qr(rng.standard_normal((dim, d)))
    return q[:, :d].T


def oracle_tables(world: World, dim: int, rng: np.random.Generator) -> dict[TableKind, np.ndarray]:
    """Oracle UR/IR are the true latents embedded in ``dim`` dims; oracle CRs a non-linear map of them."""
    if world.user_latent is None or world.item_latent is None:
        raise InputError("planted variants need a planted world with true latents (truth/ directory)")
    d = world.user_latent.shape[1]
    if dim < d:
        raise InputError(f"snapshot dim {dim} must be at least the latent dim {d}")
    u, v = world.user_latent.astype(np.float64), world.item_latent.astype(np.float64)
    q_ur, q_cu, q_ci = (_orthonormal(rng, d, dim) for _ in range(3))
    return {
        TableKind.UR: u @ q_ur,
        TableKind.IR: v @ q_ur,  # same embedding, so <UR, IR> is the true affinity
        TableKind.CR_USER: np.tanh(u @ q_cu / 2.0),
        TableKind.CR_ITEM: np.tanh(v @ q_ci / 2.0),
    }


def _variant_matrix(name: str, oracle: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """The variant's base matrix and, for id_shuffled, the row permutation of the ids."""
    std = oracle.std(axis=0, keepdims=True) + 1e-12
    if name == "oracle":
        return oracle, None
    if name == "random":
        return std * rng.standard_normal(oracle.shape) + oracle.mean(axis=0, keepdims=True), None
    if name == "id_shuffled":
        return oracle, rng.permutation(oracle.shape[0])
    level, rank = variant_noise(name), variant_rank(name)
    if level is not None:
        return oracle + level * std * rng.standard_normal(oracle.shape), None
    if rank is not None:
        return rank_projection(oracle, rank), None
    check_variant_names([name])
    raise AssertionError(name)  # unreachable: check_variant_names raised


def rank_projection(matrix: np.ndarray, k: int) -> np.ndarray:
    """``matrix`` projected onto its top-``k`` principal directions (rows keep their mean)."""
    mean = matrix.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(matrix - mean, full_matrices=False)
    top = vt[:k]
    return mean + (matrix - mean) @ top.T @ top


def _variant_stream(seed: int, name: str) -> np.random.Generator:
    """The variant's own random stream: the same for the same seed and name, distinct across names."""
    key = PLANTED_VARIANTS.index(name) if name in PLANTED_VARIANTS else 100 + zlib.crc32(name.encode())
    return np.random.default_rng([seed, key])


def _activity_quantile(world: World, entity: str) -> np.ndarray:
    """Each user's or item's event-count quantile in [0, 1]: active ids drift more."""
    col, ids = (("user_id", world.users["user_id"]) if entity == "user" else ("item_id", world.items["item_id"]))
    counts = world.events[col].value_counts().reindex(ids.to_numpy(), fill_value=0).to_numpy()
    return counts.argsort().argsort() / max(len(counts) - 1, 1)


def write_planted_variants(
    world: World,
    root: str | Path,
    *,
    dim: int = 32,
    n_snapshots: int = 3,
    interval_minutes: int = 5,
    variants: Sequence[str] = PLANTED_VARIANTS,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, list[Path]]:
    """Write each planted variant as ``n_snapshots`` snapshots ``interval_minutes`` apart.

    The last snapshot sits at the end of the event stream (rounded up to the interval). Between
    snapshots every row takes a small random-walk step whose size grows with the id's activity,
    so volatility analyses have a planted, activity-dependent drift to find.
    """
    check_variant_names(variants)
    rng = np.random.default_rng(seed)
    oracle = oracle_tables(world, dim, rng)
    ids = {"user": world.users["user_id"].to_numpy(np.int64), "item": world.items["item_id"].to_numpy(np.int64)}
    activity = {e: _activity_quantile(world, e) for e in ("user", "item")}
    step = interval_minutes * 60
    last = -(-world.end_ts // step) * step
    times = [parse_event_time(last) - timedelta(minutes=interval_minutes * (n_snapshots - 1 - k))
             for k in range(n_snapshots)]

    out: dict[str, list[Path]] = {}
    for name in variants:
        vrng = _variant_stream(seed, name)
        bases = {kind: _variant_matrix(name, mat, vrng) for kind, mat in oracle.items()}
        walks = {kind: np.zeros_like(base) for kind, (base, _) in bases.items()}
        paths = []
        for k, when in enumerate(times):
            tables = {}
            for kind, (base, perm) in bases.items():
                if k > 0:
                    scale = DRIFT_PER_STEP * (0.5 + activity[kind.entity])[:, None] * oracle[kind].std(axis=0)
                    walks[kind] += scale * vrng.standard_normal(base.shape)
                row_ids = ids[kind.entity] if perm is None else ids[kind.entity][perm]
                tables[kind] = EmbeddingTable(ids=row_ids, vectors=(base + walks[kind]).astype(np.float32))
            paths.append(write_snapshot(root, name, when, tables, source_layer=f"planted:{name}",
                                        extra={"planted": name, "world_seed": world.meta.get("config", {}).get("seed")},
                                        overwrite=overwrite))
        out[name] = paths
    return out
