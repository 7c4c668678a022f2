"""Planted-quality snapshot variants written from a planted world's true latent factors.

They are yardsticks with a known order of quality, which the evaluator and the analyses must
recover: ``oracle`` > ``noise_low`` > ``noise_high`` > ``random``; ``id_shuffled`` carries no
information about its ids; ``rank_collapsed`` lives in a 2-dimensional subspace.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np

from lee.errors import InputError
from lee.snapshot import EmbeddingTable, TableKind, write_snapshot
from lee.timeutil import parse_event_time
from lee.world.model import World

PLANTED_VARIANTS: tuple[str, ...] = ("oracle", "noise_low", "noise_high", "random", "id_shuffled", "rank_collapsed")
NOISE_LEVELS = {"noise_low": 0.5, "noise_high": 2.0}  # noise std as a multiple of the oracle's per-dim std
COLLAPSED_RANK = 2
DRIFT_PER_STEP = 0.02  # random-walk step between snapshots, in oracle std, scaled by activity


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
    if name in NOISE_LEVELS:
        return oracle + NOISE_LEVELS[name] * std * rng.standard_normal(oracle.shape), None
    if name == "random":
        return std * rng.standard_normal(oracle.shape) + oracle.mean(axis=0, keepdims=True), None
    if name == "id_shuffled":
        return oracle, rng.permutation(oracle.shape[0])
    if name == "rank_collapsed":
        mean = oracle.mean(axis=0, keepdims=True)
        _, _, vt = np.linalg.svd(oracle - mean, full_matrices=False)
        top = vt[:COLLAPSED_RANK]
        return mean + (oracle - mean) @ top.T @ top, None
    raise InputError(f"unknown planted variant {name!r}; choose from {', '.join(PLANTED_VARIANTS)}")


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
        vrng = np.random.default_rng([seed, PLANTED_VARIANTS.index(name) if name in PLANTED_VARIANTS else 99])
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
