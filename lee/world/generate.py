"""The planted ad world generator.

Users belong to planted interest groups; items belong to categories that mirror those groups;
clicks, conversions and GMV are driven by the affinity of true latent vectors. Because the truth
is known, tests can assert that the upstream model, the evaluator and the analyses recover it.

Two click models (``WorldConfig.click_model``):

- ``legacy`` (the default, what the demo and every planted-truth test are calibrated on): group
  centroids drawn at random on a sphere of radius ``group_separation``, users and items isotropic
  around them with std ``user_noise`` / ``item_noise``. The centroid term dominates <u, v> and
  lives in a few directions, so a rank-2 projection of the oracle keeps most of the signal.
- ``balanced``: every direction of the latent space matters alike. The group centroids are the
  vertices of a regular simplex (norm ``group_separation``) spanning G-1 random directions; users
  and items spread around their centroid by ``user_noise`` / ``item_noise`` along those
  directions and, along the other d-G+1, by just enough more that every direction carries the
  same variance (for equally sized groups). The click logit uses the plain inner product <u, v>,
  so every direction carries the same weight too: a rank-k projection keeps about k/d of the
  affinity's signal, and no k < d is free. Group interests drive item choice (targeted exposures
  come from the user's own category) and clicks (the centroid term of <u, v>); activity is a
  separate, smaller effect (``activity_effect``, 0.2 logit per std of log-activity), outside the
  latents.

Everything is vectorised numpy driven by one seeded generator, so the default world takes about a
second and the `large` scale (10M events, 1M users) stays within memory on a laptop.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lee.timeutil import epoch_seconds
from lee.world.config import ACTIVITY_LEVELS, AD_SCENARIOS, CONTENT_SCENARIO, WorldConfig
from lee.world.model import World

_CHUNK = 1_000_000


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _sparse_ids(rng: np.random.Generator, n: int, base: int) -> np.ndarray:
    """Distinct, non-contiguous int64 ids (so no code can mistake an id for a row number)."""
    return base + np.sort(rng.choice(np.arange(n * 8, dtype=np.int64), size=n, replace=False))


def generate_world(config: WorldConfig | None = None, *, progress: bool = False) -> World:
    """Generate a planted world from ``config`` (default: the `small` scale, seed 0)."""
    cfg = config or WorldConfig()
    rng = np.random.default_rng(cfg.seed)
    d, G = cfg.latent_dim, cfg.n_groups

    balanced = cfg.click_model == "balanced"
    if balanced:  # --- planted groups: a regular simplex in G-1 random directions of the d-dim latent space
        basis = np.linalg.qr(rng.standard_normal((d, d)))[0].T  # rows: orthonormal; the first G-1 span the groups
        centroids = _simplex(G, cfg.group_separation) @ basis[: G - 1]
    else:  # --- legacy: centroids at random on a sphere of radius `group_separation`
        centroids = rng.standard_normal((G, d))
        centroids *= cfg.group_separation / np.linalg.norm(centroids, axis=1, keepdims=True)

    def deviations(n: int, noise: float) -> np.ndarray:
        if balanced:
            return _spread(rng, n, basis, G, noise, cfg.group_separation)
        return noise * rng.standard_normal((n, d))

    # --- users
    group_share = rng.dirichlet(np.full(G, 5.0))
    user_group = rng.choice(G, size=cfg.n_users, p=group_share)
    user_latent = centroids[user_group] + deviations(cfg.n_users, cfg.user_noise)
    activity = rng.lognormal(0.0, 1.0, size=cfg.n_users)
    log_act = np.log(activity)
    activity_z = (log_act - log_act.mean()) / max(float(log_act.std()), 1e-12)
    activity_level = np.searchsorted(np.quantile(activity, [1 / 3, 2 / 3]), activity, side="right")
    ood_propensity = rng.beta(1.0, 3.0, size=cfg.n_users)  # appetite for ads in other scenarios
    users = pd.DataFrame({
        "user_id": _sparse_ids(rng, cfg.n_users, 10_000_000),
        "group": user_group.astype(np.int16),
        "label": pd.Categorical.from_codes(user_group, categories=list(cfg.labels)),
        "activity": activity,
        "activity_level": pd.Categorical.from_codes(activity_level, categories=list(ACTIVITY_LEVELS)),
        "home_ad_actions_10d": rng.poisson(0.8 * activity * (rng.random(cfg.n_users) < 0.6)),
        "other_ad_actions_60d": rng.poisson(12.0 * activity * ood_propensity),
    })

    # --- items: content first, then ads; categories mirror the user groups
    n_items = cfg.n_content_items + cfg.n_ad_items
    domain = np.r_[np.zeros(cfg.n_content_items, np.int8), np.ones(cfg.n_ad_items, np.int8)]
    category = rng.integers(0, G, size=n_items)
    item_latent = centroids[category] + deviations(n_items, cfg.item_noise)
    adv_category = np.r_[np.arange(G), rng.integers(0, G, size=cfg.n_advertisers - G)]
    advertiser = np.full(n_items, -1, dtype=np.int64)
    for g in range(G):  # G iterations, not one per item
        ads_g = np.flatnonzero((domain == 1) & (category == g))
        pool = np.flatnonzero(adv_category == g)
        advertiser[ads_g] = pool[rng.integers(0, pool.size, size=ads_g.size)]
    cat_price = rng.lognormal(3.0, 0.6, size=G)
    price = np.where(domain == 1, cat_price[category] * rng.lognormal(0.0, 0.4, size=n_items), 0.0)
    popularity = rng.normal(0.0, 0.5, size=n_items)
    items = pd.DataFrame({
        "item_id": _sparse_ids(rng, n_items, 500_000_000),
        "domain": domain,
        "category": pd.Categorical.from_codes(category, categories=list(cfg.labels)),
        "advertiser_id": advertiser,
        "price": price.round(2),
    })

    # --- events: who, when, where, what
    n = cfg.n_events
    start = epoch_seconds(cfg.start_time)
    ts = np.sort(start + rng.integers(0, cfg.duration_minutes * 60, size=n))
    ev_user = rng.choice(cfg.n_users, size=n, p=activity / activity.sum())
    ev_domain = (rng.random(n) >= cfg.content_share).astype(np.int8)
    targeted = rng.random(n) < cfg.targeting_share
    ev_item = _draw_items(rng, ev_domain, np.where(targeted, user_group[ev_user], -1), domain, category, popularity)
    scen_p = np.array([0.4, 0.25, 0.25, 0.1])
    ad_scen = rng.choice(len(AD_SCENARIOS), size=n, p=scen_p)
    scenario_codes = np.where(ev_domain == 1, ad_scen + 1, 0)
    position = rng.integers(1, 6, size=n).astype(np.int8)

    click = np.empty(n, np.int8)
    conversion = np.zeros(n, np.int8)
    gmv = np.zeros(n, np.float64)
    pos_effect = -0.15 * (position - 1)
    scen_effect = np.array([0.0, 0.3, 0.1, 0.0, -0.2])[scenario_codes]
    base = np.where(ev_domain == 1, cfg.ad_base_logit, cfg.content_base_logit)
    activity_logit = cfg.activity_logit
    for lo in tqdm(range(0, n, _CHUNK), desc="events", disable=not progress, unit="chunk"):
        sl = slice(lo, min(lo + _CHUNK, n))
        aff = np.einsum("ij,ij->i", user_latent[ev_user[sl]], item_latent[ev_item[sl]])
        logit = base[sl] + cfg.affinity_strength * aff
        if activity_logit:  # legacy worlds have none: their logits stay bit for bit what they were
            logit = logit + activity_logit * activity_z[ev_user[sl]]
        logit = logit + popularity[ev_item[sl]] + pos_effect[sl] + scen_effect[sl]
        click[sl] = rng.random(logit.size) < _sigmoid(logit)
        conv_p = _sigmoid(-1.5 + 0.15 * aff) * (ev_domain[sl] == 1) * click[sl]
        conversion[sl] = rng.random(logit.size) < conv_p
        gmv[sl] = conversion[sl] * price[ev_item[sl]] * rng.lognormal(0.0, 0.3, size=logit.size)

    events = pd.DataFrame({
        "ts": ts.astype(np.int64),
        "user_id": users["user_id"].to_numpy()[ev_user],
        "item_id": items["item_id"].to_numpy()[ev_item],
        "domain": ev_domain,
        "scenario": pd.Categorical.from_codes(scenario_codes, categories=[CONTENT_SCENARIO, *AD_SCENARIOS]),
        "position": position,
        "click": click,
        "conversion": conversion,
        "gmv": gmv.round(2),
    })
    meta = {"kind": "planted", "config": cfg.to_dict(), "group_labels": list(cfg.labels),
            "centroids": centroids.tolist()}
    return World(users=users, items=items, events=events, meta=meta,
                 user_latent=user_latent.astype(np.float32), item_latent=item_latent.astype(np.float32))


def _simplex(G: int, radius: float) -> np.ndarray:
    """(G, G-1) vertices of a regular simplex centred on 0, each at distance ``radius`` from it.

    Equally sized groups then have the same between-group variance, radius^2 / (G-1), along each
    of the G-1 directions, and every pair of centroids is equally far apart.
    """
    centred = np.eye(G) - 1.0 / G                      # rows sum to zero, span a (G-1)-dim subspace
    q = np.linalg.qr(centred)[0][:, : G - 1]          # orthonormal basis of that subspace
    vertices = centred @ q                             # (G, G-1), norm sqrt((G-1)/G) each
    return vertices * (radius / np.sqrt((G - 1) / G)) if G > 1 else vertices


def _spread(rng: np.random.Generator, n: int, basis: np.ndarray, G: int, noise: float,
            separation: float) -> np.ndarray:
    """Deviations from the centroid: std ``noise`` along the G-1 group directions and
    sqrt(noise^2 + separation^2 / (G-1)) along the others, so the latent (centroid + deviation)
    has the same variance along every direction of the space."""
    d = basis.shape[0]
    between = separation**2 / (G - 1) if G > 1 else 0.0
    std = np.r_[np.full(G - 1, noise), np.full(d - (G - 1), np.sqrt(noise**2 + between))]
    return (rng.standard_normal((n, d)) * std) @ basis


def _draw_items(
    rng: np.random.Generator,
    ev_domain: np.ndarray,
    ev_group: np.ndarray,
    domain: np.ndarray,
    category: np.ndarray,
    popularity: np.ndarray,
) -> np.ndarray:
    """Pick an item per event: from the event's group (targeted, ev_group >= 0) or by popularity.

    Items are bucketed by (domain, category); a draw is an offset into its bucket, so the cost is
    linear in the number of events whatever the number of items.
    """
    n = ev_domain.size
    G = int(category.max()) + 1
    order = np.lexsort((category, domain))  # bucket-major order of items
    bucket = domain[order].astype(np.int64) * G + category[order]
    starts = np.searchsorted(bucket, np.arange(2 * G))
    counts = np.searchsorted(bucket, np.arange(2 * G), side="right") - starts
    out = np.empty(n, np.int64)
    targeted = ev_group >= 0
    b = ev_domain[targeted].astype(np.int64) * G + ev_group[targeted]
    empty = counts[b] == 0  # a category with no items in a domain: fall back to popularity
    pick = starts[b] + np.floor(rng.random(b.size) * np.maximum(counts[b], 1)).astype(np.int64)
    out[np.flatnonzero(targeted)] = order[pick]
    untargeted = ~targeted
    untargeted[np.flatnonzero(targeted)[empty]] = True
    w = np.exp(popularity)
    for dom in (0, 1):
        idx = np.flatnonzero(untargeted & (ev_domain == dom))
        pool = np.flatnonzero(domain == dom)
        out[idx] = pool[rng.choice(pool.size, size=idx.size, p=w[pool] / w[pool].sum())]
    return out
