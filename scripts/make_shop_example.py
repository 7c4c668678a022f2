"""Write fixtures/examples/shop: a synthetic shop click log as a user would hold it, with embeddings.

The README's "Your own data" commands run on it. Nothing here is planted-world code: a CSV log
(ISO times, text ids, a device column, a price), users and items CSVs with attributes, and two
``.npz`` embedding files (``ids``, ``vectors``) — the user factors with noise, as a pre-trained
upstream model would give. Users 1 in 10 have no vector (coverage is then below 100%).

    python scripts/make_shop_example.py            # regenerates the committed files (seeded)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "examples" / "shop"


def main(seed: int = 7, n_users: int = 1500, n_items: int = 300, n_events: int = 40_000, dim: int = 8) -> None:
    rng = np.random.default_rng(seed)
    u_fac = rng.normal(size=(n_users, dim))
    i_fac = rng.normal(size=(n_items, dim))
    users = pd.DataFrame({"user": [f"u{k:05d}" for k in range(n_users)],
                          "age": rng.integers(18, 70, n_users),
                          "country": rng.choice(["de", "fr", "it", "es"], n_users, p=[0.4, 0.3, 0.2, 0.1])})
    items = pd.DataFrame({"item": [f"sku-{k:04d}" for k in range(n_items)],
                          "category": rng.choice(["shoes", "bags", "hats", "coats", "belts"], n_items),
                          "price": np.round(rng.lognormal(3.0, 0.6, n_items), 2)})
    u = rng.integers(0, n_users, n_events)
    i = rng.integers(0, n_items, n_events)
    device = rng.choice(["mobile", "desktop", "tablet"], n_events, p=[0.6, 0.3, 0.1])
    affinity = (u_fac[u] * i_fac[i]).sum(1) / np.sqrt(dim)
    logit = -2.2 + 1.2 * affinity + 0.3 * (device == "mobile")
    clicked = (rng.random(n_events) < 1 / (1 + np.exp(-logit))).astype(int)
    start = np.datetime64("2024-03-01T00:00:00")
    seconds = np.sort(rng.integers(0, 14 * 86_400, n_events))
    log = pd.DataFrame({"time": (start + seconds.astype("timedelta64[s]")).astype(str),
                        "user": users["user"].to_numpy()[u], "item": items["item"].to_numpy()[i],
                        "device": device, "clicked": clicked})
    OUT.mkdir(parents=True, exist_ok=True)
    log.to_csv(OUT / "clicks.csv", index=False)
    users.to_csv(OUT / "users.csv", index=False)
    items.to_csv(OUT / "items.csv", index=False)
    have = rng.random(n_users) >= 0.1                                   # 10% of users without a vector
    ur = (u_fac + 0.5 * rng.normal(size=u_fac.shape)).astype(np.float32)
    ir = (i_fac + 0.5 * rng.normal(size=i_fac.shape)).astype(np.float32)
    np.savez(OUT / "user_vectors.npz", ids=users["user"].to_numpy()[have].astype(str), vectors=ur[have])
    np.savez(OUT / "item_vectors.npz", ids=items["item"].to_numpy().astype(str), vectors=ir)


if __name__ == "__main__":
    main()
