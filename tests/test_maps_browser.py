"""The Clusters page draws a map of every id of a generated 60,000-id table, offline, in headless
chromium; colouring by label redraws it; under a small message-size limit it draws a stated subset.

The million-id run is ``benchmarks/dashboard_map.py`` (it writes the README's screenshot). Skipped
when chromium or chromedriver is missing, unless LEE_REQUIRE_BROWSER=1 (as in CI).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    if os.environ.get("LEE_REQUIRE_BROWSER") == "1":
        raise RuntimeError("LEE_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed")
    pytest.skip("chromium and chromedriver are not installed", allow_module_level=True)
pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from analysis.map_view import points_that_fit  # noqa: E402
from benchmarks.dashboard_map import MAP_DRAWN_JS, build_run, chromium, serve, wait_for_map  # noqa: E402

N = 60_000
LEGEND_JS = "return Array.from(document.querySelectorAll('.legendtext')).map(e => e.textContent)"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("map_run")
    build_run(out, N, method="pca", sample=5_000)
    return out


@pytest.fixture()
def driver():
    d = chromium()
    yield d
    d.quit()


def _body(driver) -> str:
    return driver.execute_script("return document.body.innerText")


def test_clusters_page_draws_every_id_offline_and_recolours(run_dir, driver, tmp_path):
    with serve(run_dir, tmp_path / "streamlit.log") as url:
        driver.get(f"{url}/clusters")
        assert wait_for_map(driver, timeout=240) == N
        body = _body(driver)
        assert "Traceback" not in driver.page_source
        assert f"Drawing all {N:,} mapped points" in body
        assert f"fitted on a stratified sample of 5,000 of {N:,} rows, 55,000 more placed" in body
        # colour by label: one trace per planted interest, every point still drawn
        option = next(el for el in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stRadio"] label')
                      if el.text.strip() == "label")
        option.click()
        WebDriverWait(driver, 120).until(lambda d: "interest 00" in d.execute_script(LEGEND_JS))
        WebDriverWait(driver, 120).until(lambda d: d.execute_script(MAP_DRAWN_JS) == N)
        legend = driver.execute_script(LEGEND_JS)
        assert {f"interest {b:02d}" for b in range(16)} <= set(legend)
        shots = Path(os.environ.get("LEE_SCREENSHOTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(shots / "dashboard-map.png"))
        assert (shots / "dashboard-map.png").stat().st_size > 10_000


def test_a_small_message_limit_draws_a_stated_subset(run_dir, driver, tmp_path):
    keep = points_that_fit(1 * 1e6 * 0.8, "cluster")  # the page keeps 20% of the limit for the rest
    assert 0 < keep < N
    with serve(run_dir, tmp_path / "streamlit.log", max_message_mb=1) as url:
        driver.get(f"{url}/clusters")
        assert wait_for_map(driver, timeout=240) == keep
        assert f"Drawing a seeded uniform subset of {keep:,} of the {N:,} mapped points" in _body(driver)
        assert "Traceback" not in driver.page_source
