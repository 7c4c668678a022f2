"""Write synthetic click logs in the native layouts of six public datasets the repository does not hold.

Nothing is copied from a released dataset: every id, time and value is generated here (seeded), in
each dataset's published column layout, header convention, delimiter and time encoding:

============  =====================  =======================================================================
directory     file                   layout
============  =====================  =======================================================================
avazu         ``train.csv``          header ``id,click,hour,C1,banner_pos,site_id,...,C21``; hour ``YYMMDDHH``
taobao        ``UserBehavior.csv``   no header: user, item, category, behavior (pv/buy/cart/fav), unix seconds
retailrocket  ``events.csv``         header ``timestamp,visitorid,event,itemid,transactionid``; time in ms
amazon        ``reviews.json``       JSON lines: reviewerID, asin, overall 1-5, unixReviewTime, reviewTime
kuairec       ``small_matrix.csv``   user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio
yoochoose     ``yoochoose-clicks.dat``  no header: session, ISO time ``2014-04-07T10:51:09.277Z``, item, category
============  =====================  =======================================================================

Each log carries a planted user x item signal: users and items have latent factors, and the
outcome (click, purchase, high rating, long watch) is more likely when they agree, so LEE's
verdict on a snapshot holding those factors (plus noise) is meaningful. With ``--vectors`` each
directory also gets ``user_vectors.npz`` and ``item_vectors.npz`` (``ids``, ``vectors``) keyed by
the ids the documented import keeps (the Yoochoose session stands in for a user).

    python scripts/make_native_formats.py --out fixtures/formats/native --events 120      # the fixtures
    python scripts/make_native_formats.py --out /tmp/native --events 6000 --vectors       # a trial
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DIM = 8


def _hex(prefix: str, k: int) -> str:
    """An 8-hex-digit id like Avazu's hashed values (``a99f214a``)."""
    return hashlib.md5(f"{prefix}{k}".encode()).hexdigest()[:8]


@dataclass
class Planted:
    """Who meets whom, and whether it went well: indices into the users and items, and the outcome."""

    users: np.ndarray
    items: np.ndarray
    affinity: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    rng: np.random.Generator

    def positive(self, base: float, strength: float = 1.6) -> np.ndarray:
        """0/1 outcomes with logit ``base + strength * affinity``."""
        logit = base + strength * self.affinity
        return (self.rng.random(len(self.users)) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    def vectors(self, user_ids: np.ndarray, item_ids: np.ndarray, out: Path, noise: float = 0.5) -> None:
        """The planted factors plus noise, as an upstream model's snapshot would hold them."""
        ur = (self.user_factors + noise * self.rng.normal(size=self.user_factors.shape)).astype(np.float32)
        ir = (self.item_factors + noise * self.rng.normal(size=self.item_factors.shape)).astype(np.float32)
        np.savez(out / "user_vectors.npz", ids=user_ids, vectors=ur)
        np.savez(out / "item_vectors.npz", ids=item_ids, vectors=ir)


def _plant(rng: np.random.Generator, n_users: int, n_items: int, n_events: int) -> Planted:
    u_fac = rng.normal(size=(n_users, DIM))
    i_fac = rng.normal(size=(n_items, DIM))
    u = rng.integers(0, n_users, n_events)
    i = rng.integers(0, n_items, n_events)
    return Planted(u, i, (u_fac[u] * i_fac[i]).sum(1) / np.sqrt(DIM), u_fac, i_fac, rng)


def _seconds(rng: np.random.Generator, start: str, days: float, n: int) -> np.ndarray:
    """Sorted epoch seconds (float) over ``days`` from ``start`` (UTC)."""
    t0 = pd.Timestamp(start, tz="UTC").timestamp()
    return np.sort(t0 + rng.random(n) * days * 86_400)


def avazu(out: Path, n: int, rng: np.random.Generator, vectors: bool) -> None:
    """Kaggle Avazu ``train``: the user is the device_ip (device_id is mostly the null device a99f214a)."""
    n_users, n_items = max(n // 15, 20), max(n // 40, 10)
    p = _plant(rng, n_users, n_items, n)
    ips = np.array([_hex("ip", k) for k in range(n_users)])
    sites = np.array([_hex("site", k) for k in range(n_items)])
    t = _seconds(rng, "2014-10-21", 2, n)
    hour = pd.to_datetime(t, unit="s", utc=True).strftime("%y%m%d%H")
    dev = np.where(rng.random(n) < 0.8, "a99f214a", np.array([_hex("dev", k) for k in range(n_users)])[p.users])
    frame = pd.DataFrame({
        "id": [str(v) for v in rng.integers(10**18, 2**63 - 1, n, dtype=np.int64).astype(np.uint64) * 2],
        "click": p.positive(-2.0), "hour": hour, "C1": rng.choice([1005, 1002, 1010], n, p=[0.9, 0.07, 0.03]),
        "banner_pos": rng.choice([0, 1], n, p=[0.7, 0.3]), "site_id": sites[p.items],
        "site_domain": np.array([_hex("dom", k % 7) for k in range(n_items)])[p.items],
        "site_category": rng.choice(["28905ebd", "50e219e0", "f028772b"], n), "app_id": "ecad2386",
        "app_domain": "7801e8d9", "app_category": "07d7df22", "device_id": dev, "device_ip": ips[p.users],
        "device_model": rng.choice(["8a4875bd", "1f0bc64f", "d787e91b", "76dc4769"], n),
        "device_type": rng.choice([1, 0], n, p=[0.95, 0.05]), "device_conn_type": rng.choice([0, 2], n, p=[0.85, 0.15]),
        "C14": rng.integers(15_000, 22_000, n), "C15": 320, "C16": 50, "C17": rng.integers(1_700, 2_500, n),
        "C18": rng.choice([0, 3], n), "C19": rng.choice([35, 39, 161], n), "C20": rng.choice([-1, 100_084], n),
        "C21": rng.choice([79, 157, 117], n)})
    frame.to_csv(out / "train.csv", index=False)
    if vectors:
        p.vectors(ips, sites, out)


def taobao(out: Path, n: int, rng: np.random.Generator, vectors: bool) -> None:
    """Tianchi Taobao ``UserBehavior.csv``: no header; a positive is anything beyond a page view."""
    n_users, n_items = max(n // 15, 20), max(n // 40, 10)
    p = _plant(rng, n_users, n_items, n)
    user_ids = np.arange(1, n_users + 1) * 7 + 1_000
    item_ids = rng.choice(np.arange(100_000, 5_000_000), n_items, replace=False)
    cats = rng.choice(np.arange(1_000, 5_000_000), 12, replace=False)[np.arange(n_items) % 12]
    pos = p.positive(-2.2)
    behavior = np.where(pos == 1, rng.choice(["buy", "cart", "fav"], n, p=[0.3, 0.45, 0.25]), "pv")
    t = _seconds(rng, "2017-11-25", 9, n).astype(np.int64)
    frame = pd.DataFrame({"user_id": user_ids[p.users], "item_id": item_ids[p.items],
                          "category_id": cats[p.items], "behavior_type": behavior, "timestamp": t})
    frame.sort_values("user_id", kind="stable").to_csv(out / "UserBehavior.csv", index=False, header=False)
    if vectors:
        p.vectors(user_ids, item_ids, out)


def retailrocket(out: Path, n: int, rng: np.random.Generator, vectors: bool) -> None:
    """RetailRocket ``events.csv``: times in epoch milliseconds, transactionid only on transactions."""
    n_users, n_items = max(n // 15, 20), max(n // 40, 10)
    p = _plant(rng, n_users, n_items, n)
    visitor_ids = rng.choice(np.arange(0, 1_400_000), n_users, replace=False)
    item_ids = rng.choice(np.arange(0, 470_000), n_items, replace=False)
    pos = p.positive(-2.0)
    event = np.where(pos == 1, rng.choice(["addtocart", "transaction"], n, p=[0.7, 0.3]), "view")
    ms = (_seconds(rng, "2015-06-02", 10, n) * 1000).astype(np.int64)
    tid = np.where(event == "transaction", rng.integers(0, 17_000, n).astype(str), "")
    frame = pd.DataFrame({"timestamp": ms, "visitorid": visitor_ids[p.users], "event": event,
                          "itemid": item_ids[p.items], "transactionid": tid})
    frame.to_csv(out / "events.csv", index=False)
    if vectors:
        p.vectors(visitor_ids, item_ids, out)


def amazon(out: Path, n: int, rng: np.random.Generator, vectors: bool) -> None:
    """Amazon product reviews (McAuley, 2014/2018 layout): one JSON object a line; asins keep leading zeros."""
    n_users, n_items = max(n // 10, 20), max(n // 30, 10)
    p = _plant(rng, n_users, n_items, n)
    reviewers = np.array(["A" + hashlib.md5(f"r{k}".encode()).hexdigest()[:13].upper() for k in range(n_users)])
    asins = np.array([f"{k * 7919 % 10**10:010d}" if k % 3 else "B00" + hashlib.md5(f"a{k}".encode()).hexdigest()[:7]
                      .upper() for k in range(n_items)])
    score = np.clip(np.round(3.4 + 1.3 * p.affinity + 0.8 * rng.normal(size=n)), 1, 5).astype(int)
    t = (_seconds(rng, "2009-01-01", 5 * 365, n) // 86_400 * 86_400).astype(np.int64)
    when = pd.to_datetime(t, unit="s", utc=True)
    with open(out / "reviews.json", "w", encoding="utf-8") as fh:
        for k in range(n):
            fh.write(json.dumps({
                "reviewerID": str(reviewers[p.users[k]]), "asin": str(asins[p.items[k]]),
                "reviewerName": f"reader {p.users[k]}", "helpful": [int(rng.integers(0, 3)), int(rng.integers(3, 6))],
                "reviewText": "Synthetic review text.", "overall": float(score[k]), "summary": "Synthetic",
                "unixReviewTime": int(t[k]), "reviewTime": f"{when[k]:%m} {when[k]:%d}, {when[k]:%Y}"}) + "\n")
    if vectors:
        p.vectors(reviewers, asins, out)


def kuairec(out: Path, n: int, rng: np.random.Generator, vectors: bool) -> None:
    """KuaiRec ``small_matrix.csv``: float epoch seconds, a date YYYYMMDD, and the watch ratio."""
    n_users, n_items = max(n // 15, 20), max(n // 40, 10)
    p = _plant(rng, n_users, n_items, n)
    video_duration = rng.integers(5_000, 60_000, n_items)
    ratio = np.round(np.exp(0.2 + 0.55 * p.affinity + 0.5 * rng.normal(size=n)), 6)
    play = (ratio * video_duration[p.items]).astype(np.int64)
    t = np.round(_seconds(rng, "2020-07-05", 8, n), 3)
    when = pd.to_datetime(t, unit="s", utc=True).tz_convert("Asia/Shanghai")
    frame = pd.DataFrame({"user_id": p.users, "video_id": p.items, "play_duration": play,
                          "video_duration": video_duration[p.items], "time": when.strftime("%Y-%m-%d %H:%M:%S.%f")
                          .str[:-3], "date": when.strftime("%Y%m%d").astype(int), "timestamp": t,
                          "watch_ratio": ratio})
    frame.sort_values(["user_id", "timestamp"], kind="stable").to_csv(out / "small_matrix.csv", index=False)
    if vectors:
        p.vectors(np.arange(n_users), np.arange(n_items), out)


def yoochoose(out: Path, n: int, rng: np.random.Generator, vectors: bool) -> None:
    """RecSys Challenge 2015 ``yoochoose-clicks.dat``: no header; every row is a click (no negatives)."""
    n_sessions, n_items = max(n // 4, 20), max(n // 40, 10)
    p = _plant(rng, n_sessions, n_items, n)
    session_ids = np.arange(1, n_sessions + 1)
    item_ids = 214_500_000 + rng.choice(np.arange(0, 500_000), n_items, replace=False)
    category = np.where(rng.random(n_items) < 0.2, "S", rng.integers(0, 13, n_items).astype(str))
    t = _seconds(rng, "2014-04-01", 6, n)
    iso = pd.to_datetime(t, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    frame = pd.DataFrame({"session": session_ids[p.users], "ts": iso, "item": item_ids[p.items],
                          "category": category[p.items]})
    frame.sort_values(["session", "ts"], kind="stable").to_csv(out / "yoochoose-clicks.dat", index=False, header=False)
    if vectors:
        p.vectors(session_ids, item_ids, out)


MAKERS = {"avazu": avazu, "taobao": taobao, "retailrocket": retailrocket, "amazon": amazon, "kuairec": kuairec,
          "yoochoose": yoochoose}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--events", type=int, default=120)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--vectors", action="store_true", help="also write the planted user/item vectors (.npz)")
    ap.add_argument("--only", help="comma-separated subset of " + ", ".join(MAKERS))
    args = ap.parse_args()
    for k, (name, make) in enumerate(MAKERS.items()):
        if args.only and name not in args.only.split(","):
            continue
        d = args.out / name
        d.mkdir(parents=True, exist_ok=True)
        make(d, args.events, np.random.default_rng(args.seed + k), args.vectors)


if __name__ == "__main__":
    main()
