"""The dashboard's Clusters page on a generated table of N ids (default 1M), in a headless browser.

    python benchmarks/dashboard_map.py [--n 1000000] [--method pca] [--sample 20000]
                                       [--out benchmarks/out/dashboard_map] [--shot docs/img/dashboard-map-1m.png]

Builds a finished-run directory (``--run``) whose saved suite holds one variant, ``generated``:
a UR table of N ids (planted Gaussian blobs, 16 centres ~ N(0, 3² I) in 64 dims, each id
labelled by its blob), two exposures per id with a click rate that depends on the blob, K-means
(k 16) with labels and CTR intervals by :func:`analysis.clusters.cluster_snapshot`, and a map by
:func:`analysis.maps.embed_2d` fitted on a stratified sample of ``--sample`` ids with every other
id placed by the method's transform. Then serves the dashboard on that run with ``streamlit
run``, opens ``/clusters`` in headless chromium with every host name but 127.0.0.1 unresolvable
(offline), waits until the WebGL map is drawn, saves a screenshot and prints the time of each
step (build, map, page ready) with the load average.

:func:`build_run` is also what ``tests/test_maps_browser.py`` uses at a small N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VARIANT = "generated"
OFFLINE_RULES = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


def build_run(out: Path, n: int, *, method: str = "pca", sample: int = 20_000, seed: int = 0) -> dict[str, Any]:
    """Write a finished-run directory under ``out`` (``out/analyses``: a saved suite with one
    clustered and mapped variant of ``n`` ids); returns the seconds of each step."""
    from analysis.clusters import cluster_snapshot
    from analysis.maps import embed_2d
    from analysis.suite import SuiteResult, map_frame
    from benchmarks.clusters import blobs
    from lee.snapshot import EmbeddingTable, TableKind, write_snapshot

    t0 = time.perf_counter()
    x, blob = blobs(n, 64, 16, seed=seed, spread=3.0)
    ids = np.arange(n, dtype=np.int64) + 10_000_000
    snap = write_snapshot(out / "snapshots", VARIANT, 1_767_225_600,
                          {TableKind.UR: EmbeddingTable(ids=ids, vectors=x)})
    rng = np.random.default_rng(seed + 1)
    rate = 0.02 + 0.08 * np.arange(16) / 15  # click rate by blob: 2% .. 10%
    events = pd.DataFrame({"user_id": np.repeat(ids, 2), "click": (rng.random(2 * n) < np.repeat(rate[blob], 2))
                           .astype(np.int8)})
    labels = pd.Series(np.array([f"interest {b:02d}" for b in range(16)])[blob], index=ids)
    t1 = time.perf_counter()
    clusters = cluster_snapshot(snap, TableKind.UR, k=16, events=events, labels=labels, domain=None, seed=seed,
                                n_init=3)
    t2 = time.perf_counter()
    order = pd.Index(ids).get_indexer(clusters.ids)
    m = embed_2d(x[order], method, sample=sample, strata=clusters.assignment, seed=seed, place_rest=True)
    t3 = time.perf_counter()
    frame = map_frame(m, clusters, labels)
    SuiteResult(variants=[VARIANT], clusters={VARIANT: clusters}, maps={VARIANT: {method: m}},
                map_frames={VARIANT: {method: frame}}).save(out / "analyses")
    t4 = time.perf_counter()
    return {"n": n, "method": method, "seconds_data": t1 - t0, "seconds_kmeans": t2 - t1, "seconds_map": t3 - t2,
            "seconds_save": t4 - t3, "map": m.summary()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(run: Path, log_path: Path, *, max_message_mb: int | None = None) -> Iterator[str]:
    """``streamlit run app/dashboard/main.py -- --run RUN`` on a free local port; yields its URL."""
    port = _free_port()
    extra = [] if max_message_mb is None else ["--server.maxMessageSize", str(max_message_mb)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "dashboard" / "main.py"),
             "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", *extra, "--", "--run", str(run)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 90
            while time.time() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    time.sleep(0.5)
            else:
                raise RuntimeError("streamlit did not start: " + log_path.read_text())
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def chromium(width: int = 1400, height: int = 1100) -> Any:
    """Headless chromium through chromedriver; every host name but 127.0.0.1 fails to resolve."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                "--enable-unsafe-swiftshader", OFFLINE_RULES):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(300)
    return driver


MAP_DRAWN_JS = """
const maps = Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter(g => g.data && g.data.some(t => t.type === 'scattergl'));
if (!maps.length) return -1;
const g = maps[0];
if (!g.querySelector('canvas')) return -1;
return (g._fullData || []).reduce((s, t) => s + (t._length || 0), 0);
"""
"""JavaScript: the number of points in the page's WebGL map once it has a canvas, else -1."""


def wait_for_map(driver: Any, timeout: float) -> int:
    """Until the Clusters page's WebGL map is drawn; returns the number of points it holds."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=1).until(lambda d: (d.execute_script(MAP_DRAWN_JS) or -1) > 0)
    return int(driver.execute_script(MAP_DRAWN_JS))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--method", default="pca")
    ap.add_argument("--sample", type=int, default=20_000)
    ap.add_argument("--out", default=str(REPO / "benchmarks/out/dashboard_map"))
    ap.add_argument("--shot", default=str(REPO / "docs/img/dashboard-map-1m.png"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    load0 = os.getloadavg()
    figures = build_run(out, args.n, method=args.method, sample=args.sample)
    print(json.dumps(figures, default=str), flush=True)
    driver = chromium()
    try:
        with serve(out, out / "streamlit.log") as url:
            t0 = time.perf_counter()
            driver.get(f"{url}/clusters")
            points = wait_for_map(driver, timeout=900)
            figures["seconds_page"] = time.perf_counter() - t0
            figures["points_drawn"] = points
            time.sleep(3)
            body = driver.execute_script("return document.body.innerText")
            figures["page_notes"] = [ln for ln in body.splitlines() if ln.startswith(("Drawing", "K-means"))]
            shot = Path(args.shot)
            shot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(shot))
            figures["screenshot"] = str(shot)
    finally:
        driver.quit()
    figures["load"] = {"before": load0, "after": os.getloadavg()}
    print(json.dumps(figures, indent=2, default=str))
    (out / "figures.json").write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
